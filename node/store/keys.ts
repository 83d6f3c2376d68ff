// Nix signing keys and signatures. Keys are in Nix's text formats: secret `name:base64(seed32 ++
// pub32)`, public `name:base64(pub32)`; a signature is `name:base64(sig64)` over the fingerprint
// `1;<path>;<narHash>;<narSize>;<refs>`. Ed25519 runs on node:crypto: bench:store measures it
// against @noble/ed25519 each run (node:crypto verifies 12-24x faster here, docs/decisions.md
// D23); this module is the only place that touches Ed25519, so the choice can change in one place.

import {
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  randomBytes,
  sign,
  verify,
} from 'node:crypto';
import { StoreError } from './errors.ts';
import type { PathInfo } from './store.ts';

const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface SecretKey {
  readonly name: string;
  readonly seed: Uint8Array;
  readonly publicKey: PublicKey;
  /** node:crypto's handle, made once. */
  readonly object: KeyObject;
}

export interface PublicKey {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly object: KeyObject;
}

function badKey(why: string): never {
  throw new StoreError('BAD_KEY', why);
}

function splitKey(text: string, what: string): [string, Buffer] {
  const t = text.trim();
  const colon = t.indexOf(':');
  if (colon <= 0) badKey(`${what} is not "name:base64"`);
  const name = t.slice(0, colon);
  const b64 = t.slice(colon + 1);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) badKey(`${what} "${name}" is not valid base64`);
  return [name, Buffer.from(b64, 'base64')];
}

function publicFromBytes(name: string, bytes: Uint8Array): PublicKey {
  const object = createPublicKey({
    key: Buffer.concat([SPKI_PREFIX, bytes]),
    format: 'der',
    type: 'spki',
  });
  return { name, bytes, object };
}

function secretFromSeed(name: string, seed: Uint8Array): SecretKey {
  const object = createPrivateKey({
    key: Buffer.concat([PKCS8_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(object).export({ format: 'der', type: 'spki' });
  const pub = new Uint8Array(spki.subarray(SPKI_PREFIX.length));
  return { name, seed, publicKey: publicFromBytes(name, pub), object };
}

export function parseSecretKey(text: string): SecretKey {
  const [name, bytes] = splitKey(text, 'secret key');
  if (bytes.length !== 64) badKey(`secret key "${name}" has ${bytes.length} bytes, not 64`);
  const key = secretFromSeed(name, bytes.subarray(0, 32));
  if (Buffer.compare(Buffer.from(key.publicKey.bytes), bytes.subarray(32)) !== 0) {
    badKey(`secret key "${name}": its public half does not match its seed`);
  }
  return key;
}

export function parsePublicKey(text: string): PublicKey {
  const [name, bytes] = splitKey(text, 'public key');
  if (bytes.length !== 32) badKey(`public key "${name}" has ${bytes.length} bytes, not 32`);
  return publicFromBytes(name, bytes);
}

export function formatSecretKey(k: SecretKey): string {
  return `${k.name}:${Buffer.concat([k.seed, k.publicKey.bytes]).toString('base64')}`;
}

export function formatPublicKey(k: PublicKey): string {
  return `${k.name}:${Buffer.from(k.bytes).toString('base64')}`;
}

export function generateSecretKey(name: string): SecretKey {
  if (!/^[A-Za-z0-9._-]+$/.test(name))
    badKey(`key name ${JSON.stringify(name)} has odd characters`);
  return secretFromSeed(name, randomBytes(32));
}

// --- Ed25519 (the one place) ----------------------------------------------------------------

export function signDetached(key: SecretKey, message: Uint8Array): Uint8Array {
  return sign(null, message, key.object);
}

export function verifyDetached(key: PublicKey, message: Uint8Array, sig: Uint8Array): boolean {
  return verify(null, message, key.object, sig);
}

// --- fingerprints -------------------------------------------------------------------------

/** What Nix signs: `1;<path>;<narHash sha256:nix32>;<narSize>;<references, sorted, comma-joined>`. */
export function fingerprint(info: PathInfo): Uint8Array {
  const refs = [...info.references].sort().join(',');
  return Buffer.from(`1;${info.path};${info.narHash};${info.narSize};${refs}`);
}

export function signPath(key: SecretKey, info: PathInfo): string {
  return `${key.name}:${Buffer.from(signDetached(key, fingerprint(info))).toString('base64')}`;
}

/** `info` plus the key's signature (replacing an older one by the same key name). */
export function withSignature(key: SecretKey, info: PathInfo): PathInfo {
  const sig = signPath(key, info);
  return { ...info, sigs: [...info.sigs.filter((s) => !s.startsWith(`${key.name}:`)), sig] };
}

/** Trusted public keys, by name. Built from configured keys and the members' store keys. */
export class TrustPolicy {
  private readonly keys = new Map<string, PublicKey>();
  constructor(keys: Iterable<PublicKey | string> = []) {
    for (const k of keys) this.add(k);
  }
  add(k: PublicKey | string): void {
    const key = typeof k === 'string' ? parsePublicKey(k) : k;
    this.keys.set(`${key.name}:${Buffer.from(key.bytes).toString('base64')}`, key);
  }
  /** Keys with this name (two members could, by mistake, share a name: try each). */
  named(name: string): PublicKey[] {
    return [...this.keys.values()].filter((k) => k.name === name);
  }
  get size(): number {
    return this.keys.size;
  }
}

/**
 * Throws unless one of `info.sigs` verifies under a trusted key: UNTRUSTED when no signature is
 * by a trusted key name, BAD_SIGNATURE when one is but does not verify (a forged or altered path).
 */
export function checkSignatures(info: PathInfo, trust: TrustPolicy): void {
  const fp = fingerprint(info);
  let sawTrustedName = false;
  for (const s of info.sigs) {
    const colon = s.indexOf(':');
    if (colon <= 0) continue;
    const keys = trust.named(s.slice(0, colon));
    if (keys.length === 0) continue;
    sawTrustedName = true;
    const sig = Buffer.from(s.slice(colon + 1), 'base64');
    if (sig.length !== 64) continue;
    for (const k of keys) if (verifyDetached(k, fp, sig)) return;
  }
  if (sawTrustedName) {
    throw new StoreError(
      'BAD_SIGNATURE',
      `${info.path}: its signature by a trusted key does not verify (altered metadata or a forged signature)`,
    );
  }
  throw new StoreError(
    'UNTRUSTED',
    `${info.path} is not signed by any trusted key (signed by: ${info.sigs.map((s) => s.split(':')[0]).join(', ') || 'nobody'}); add the signer's public key to the trusted keys if you trust it`,
  );
}
