// `pcr node start`'s arguments checked before anything starts: a malformed seed, an unreadable
// secret, a data dir that cannot be written fail at once with one line naming the argument and
// the right form, and a distinct exit code (EXIT.badArgument). Also the config file
// (`--config node.json`): every flag's equivalent, flags override it.

import { constants } from 'node:fs';
import { access, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import { PEER_KEY_FILE } from '../data_dir_files.ts';
import { CliError, EXIT } from './client.ts';

/** What a seed looks like, shown with every seed error. */
export const SEED_FORM = '/ip4/10.0.0.1/tcp/4001/p2p/12D3KooW...';
/** Largest config file read. */
export const CONFIG_BYTES_MAX = 1024 * 1024;

function bad(message: string, hint?: string): CliError {
  return new CliError(message, EXIT.badArgument, hint !== undefined ? { hint } : {});
}

/**
 * Checks one --seed: a multiaddr with a TCP address and a /p2p/<peer id> at its end, not this
 * node's own ID. Returns it as given.
 */
export function checkSeed(seed: string, selfId: string | undefined): string {
  const hint = `a seed is a member's address with its peer ID, like ${SEED_FORM} (the join line a member prints)`;
  let components: { name: string; value?: string }[];
  try {
    components = multiaddr(seed).getComponents();
  } catch (e) {
    throw bad(`--seed ${JSON.stringify(seed)} is not a multiaddr: ${(e as Error).message}`, hint);
  }
  const last = components.at(-1);
  if (last?.name !== 'p2p' || last.value === undefined) {
    throw bad(`--seed ${seed} does not end with /p2p/<peer id>`, hint);
  }
  try {
    peerIdFromString(last.value);
  } catch (e) {
    throw bad(`--seed ${seed}: ${last.value} is not a peer ID (${(e as Error).message})`, hint);
  }
  if (!components.some((c) => c.name === 'tcp')) {
    throw bad(`--seed ${seed} has no /tcp/<port>: members talk over TCP`, hint);
  }
  if (last.value === selfId) {
    throw bad(
      `--seed ${seed} is this node itself (peer ID ${selfId})`,
      "seed another member's address; a first node starts without --seed",
    );
  }
  return seed;
}

/** Checks one --listen or --advertise multiaddr. */
export function checkListen(flag: string, addr: string): string {
  try {
    multiaddr(addr);
  } catch (e) {
    throw bad(
      `${flag} ${JSON.stringify(addr)} is not a multiaddr: ${(e as Error).message}`,
      `for example /ip4/0.0.0.0/tcp/4001`,
    );
  }
  return addr;
}

/** The peer ID this data dir already has, if any (a seed must not be it). */
export async function existingPeerId(dataDir: string): Promise<string | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(join(dataDir, PEER_KEY_FILE));
  } catch {
    return undefined;
  }
  const { privateKeyFromProtobuf } = await import('@libp2p/crypto/keys');
  const { peerIdFromPrivateKey } = await import('@libp2p/peer-id');
  return peerIdFromPrivateKey(privateKeyFromProtobuf(bytes)).toString();
}

/** Creates the data dir if needed and checks this user may write it. */
export async function checkDataDir(dataDir: string): Promise<void> {
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await access(dataDir, constants.R_OK | constants.W_OK | constants.X_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw bad(
      `--data-dir ${dataDir} cannot be used (${code}: ${(e as Error).message})`,
      'choose a directory this user can create and write, or fix its permissions',
    );
  }
}

/** Checks that --secret-file holds a cluster secret. */
export async function checkSecretFile(file: string): Promise<void> {
  const { readSecret } = await import('../identity.ts');
  try {
    await readSecret(file);
  } catch (e) {
    throw bad(
      `--secret-file ${file}: ${(e as Error).message}`,
      "copy a member's cluster.secret (in its data dir) to this machine",
    );
  }
}

/** The error of a listen that failed because the address is taken, looking through causes. */
function addressInUse(e: unknown, depth = 0): string | undefined {
  if (typeof e !== 'object' || e === null || depth > 8) return undefined;
  const x = e as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (x.code === 'EADDRINUSE' || (typeof x.message === 'string' && /EADDRINUSE/.test(x.message))) {
    const line = typeof x.message === 'string' ? /listen EADDRINUSE[^\n]*/.exec(x.message) : null;
    return line?.[0] ?? 'EADDRINUSE';
  }
  if (Array.isArray(x.errors)) {
    for (const y of x.errors) {
      const m = addressInUse(y, depth + 1);
      if (m !== undefined) return m;
    }
  }
  return addressInUse(x.cause, depth + 1);
}

/** Turns the errors of a start that a user can fix into CliErrors; others are returned as is. */
export function explainStartError(e: unknown): unknown {
  const inUse = addressInUse(e);
  if (inUse !== undefined) {
    return new CliError(`an address to listen on is already in use (${inUse})`, EXIT.addressInUse, {
      hint: 'stop the process that holds it, or choose another port with --listen, --metrics or --cache',
    });
  }
  const err = e as { name?: string; code?: string; message?: string };
  // Refusals with their own clear message (node/p2p/instance.ts, node/raft/level_disk.ts).
  if (err.code === 'DUPLICATE_INSTANCE' || err.name === 'DataDirLockedError')
    return new CliError(String(err.message), EXIT.failed);
  if (err.name === 'SecretError') return bad(String(err.message));
  if (err.name === 'IdentityError') return new CliError(String(err.message), EXIT.failed);
  return e;
}

// ------------------------------------------------------------------------------------------------
// The config file.

/** The config file's keys: each flag of `pcr node start`, camelCase (--data-dir: dataDir). */
export const CONFIG_KEYS = [
  'dataDir',
  'name',
  'listen',
  'advertise',
  'seed',
  'secretFile',
  'maxVoters',
  'metrics',
  'snapshotEntries',
  'keepEntries',
  'store',
  'storeMaxMib',
  'cache',
  'cacheAuth',
  'cacheCompression',
  'upstream',
  'trustedKey',
  'accel',
  'label',
  'reserveCpus',
  'reserveMemoryMib',
  'nodeDownAfter',
  'fenceAfter',
  'heartbeatInterval',
  'electionTimeout',
  'logLevel',
  'logFormat',
] as const;
export type ConfigKey = (typeof CONFIG_KEYS)[number];
/** Keys that take a list (repeatable flags). */
export const CONFIG_LIST_KEYS: ReadonlySet<ConfigKey> = new Set([
  'listen',
  'advertise',
  'seed',
  'upstream',
  'trustedKey',
  'label',
]);

/** The closest of `names` to `x` (edit distance at most 3), for "did you mean". */
export function closest(x: string, names: readonly string[]): string | undefined {
  const dist = (a: string, b: string): number => {
    const d = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = d[0]!;
      d[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const t = d[j]!;
        d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
        prev = t;
      }
    }
    return d[b.length]!;
  };
  let best: string | undefined;
  let bestD = 4;
  for (const n of names) {
    const k = dist(x.toLowerCase(), n.toLowerCase());
    if (k < bestD) {
      best = n;
      bestD = k;
    }
  }
  return best;
}

/**
 * Reads a config file: a JSON object of flag values (strings, numbers, or lists of strings for
 * repeatable flags). Returns each value as the string(s) the flag would take.
 */
export async function readConfig(file: string): Promise<Map<ConfigKey, string | string[]>> {
  let text: string;
  try {
    const bytes = await readFile(file);
    if (bytes.length > CONFIG_BYTES_MAX)
      throw new Error(`larger than CONFIG_BYTES_MAX (${CONFIG_BYTES_MAX} bytes)`);
    text = bytes.toString('utf8');
  } catch (e) {
    throw bad(`--config ${file} cannot be read: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw bad(`--config ${file} is not JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw bad(`--config ${file} is not a JSON object of options`, `for example {"name": "n1"}`);
  }
  const out = new Map<ConfigKey, string | string[]>();
  for (const [k, v] of Object.entries(raw)) {
    if (!(CONFIG_KEYS as readonly string[]).includes(k)) {
      const near = closest(k, CONFIG_KEYS);
      throw bad(
        `--config ${file}: unknown option ${JSON.stringify(k)}`,
        near !== undefined
          ? `did you mean ${JSON.stringify(near)}?`
          : `options: ${CONFIG_KEYS.join(', ')}`,
      );
    }
    const key = k as ConfigKey;
    if (CONFIG_LIST_KEYS.has(key)) {
      const list = Array.isArray(v) ? v : [v];
      if (!list.every((x) => typeof x === 'string'))
        throw bad(`--config ${file}: ${k} is a list of strings`);
      out.set(key, list as string[]);
    } else if (typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v))) {
      out.set(key, String(v));
    } else {
      throw bad(`--config ${file}: ${k} is a string or a number`);
    }
  }
  return out;
}
