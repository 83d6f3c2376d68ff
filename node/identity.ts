// The data dir's credentials: the node's libp2p Ed25519 key (its peer ID, stable across restarts)
// and the cluster secret (a @libp2p/pnet swarm key). Both are files readable by the owner only.

import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { generateKey } from '@libp2p/pnet';

import { createFileAtomic, readIfExists } from './atomic_file.ts';
import { CLUSTER_SECRET_FILE, NODE_INFO_FILE, PEER_KEY_FILE } from './data_dir_files.ts';

export { CLUSTER_SECRET_FILE, NODE_INFO_FILE, PEER_KEY_FILE };

export async function loadOrCreatePeerKey(dataDir: string): Promise<PrivateKey> {
  const path = join(dataDir, PEER_KEY_FILE);
  const bytes = await readIfExists(path);
  if (bytes !== undefined) {
    try {
      return privateKeyFromProtobuf(bytes);
    } catch (e) {
      throw new IdentityError(
        `${path} is damaged (${(e as Error).message}): this node's identity is lost. Start it with ` +
          "--rejoin --seed <a member's address> to join as a new member (docs/membership.md)",
      );
    }
  }
  const key = await generateKeyPair('Ed25519');
  // Whole and synced, or not there: a partial key failed every later start, and a key lost to a
  // power loss beside a surviving Raft log would bring the node back as a stranger.
  await createFileAtomic(path, privateKeyToProtobuf(key), { mode: 0o600 });
  return key;
}

/** The node's key file cannot be read as a key. */
export class IdentityError extends Error {
  override readonly name = 'IdentityError';
}

export class SecretError extends Error {
  override readonly name = 'SecretError';
}

/** Checks a swarm key's format: `/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits. */
export function parseSecret(bytes: Uint8Array, where: string): Uint8Array {
  const text = Buffer.from(bytes).toString('utf8').trim().split(/\r?\n/);
  if (
    text.length !== 3 ||
    text[0] !== '/key/swarm/psk/1.0.0/' ||
    text[1] !== '/base16/' ||
    !/^[0-9a-f]{64}$/.test(text[2]!)
  ) {
    throw new SecretError(
      `${where} is not a cluster secret (expected a /key/swarm/psk/1.0.0/ base16 key)`,
    );
  }
  return new TextEncoder().encode(`${text.join('\n')}\n`);
}

export async function readSecret(path: string): Promise<Uint8Array> {
  const bytes = await readIfExists(path);
  if (bytes === undefined) throw new SecretError(`no cluster secret at ${path}`);
  return parseSecret(bytes, path);
}

/** The data dir's secret if present; else `given` (joining) copied in; else a new one (bootstrap). */
export async function loadOrCreateSecret(
  dataDir: string,
  given: string | undefined,
  create: boolean,
): Promise<Uint8Array> {
  const path = join(dataDir, CLUSTER_SECRET_FILE);
  const own = await readIfExists(path);
  if (own !== undefined) {
    const secret = parseSecret(own, path);
    if (
      given !== undefined &&
      Buffer.compare(Buffer.from(secret), Buffer.from(await readSecret(given))) !== 0
    ) {
      throw new SecretError(`${given} differs from the data dir's own secret ${path}`);
    }
    return secret;
  }
  let secret: Uint8Array;
  if (given !== undefined) secret = await readSecret(given);
  else if (create) {
    secret = new Uint8Array(95);
    generateKey(secret);
  } else {
    throw new SecretError(
      'joining a cluster needs its secret: pass --secret-file (the cluster.secret of a member)',
    );
  }
  await createFileAtomic(path, secret, { mode: 0o600 });
  await chmod(path, 0o600);
  return secret;
}
