// Real node processes for tests: `bin/pcr node start` spawned with execa, each with its own data
// dir on loopback; helpers to run `pcr` commands against them and to kill -9 them.

import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { ApiClient } from '../node/api/client.ts';
import type { Request } from '../node/api/requests.ts';
import type { ApiResponse } from '../node/api/wire.ts';
import { CLUSTER_SECRET_FILE, NODE_INFO_FILE, readSecret } from '../node/identity.ts';
import { until } from './until.ts';

export const PCR = resolve(fileURLToPath(new URL('../bin/pcr', import.meta.url)));

export interface NodeProc {
  readonly name: string;
  readonly dataDir: string;
  child: ResultPromise;
  id: string;
  addr: string;
  metrics: string;
  stderr: string[];
}

export { until };

/** Starts a node process and waits until it wrote its node.json. */
/** How long a node may take to start (write node.json) before a test gives up on it. */
export const START_BOUND_MS = 120_000;

export async function startNode(
  base: string,
  name: string,
  args: readonly string[] = [],
): Promise<NodeProc> {
  const dataDir = join(base, name);
  const child = execa(
    PCR,
    ['node', 'start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', ...args],
    {
      reject: false,
      // TCG: each node start would otherwise probe KVM with a guest boot (seconds of CPU here).
      env: { PCR_LOG_LEVEL: process.env.PCR_LOG_LEVEL ?? 'warn', PCR_ACCEL: 'tcg' },
      stdin: 'ignore',
    },
  );
  const p: NodeProc = { name, dataDir, child, id: '', addr: '', metrics: '', stderr: [] };
  child.stderr?.on('data', (d: Buffer) => p.stderr.push(d.toString()));
  let exited = false;
  void child.then(() => {
    exited = true;
  });
  const info = await until(
    async () => {
      if (exited) throw new Error(`${name} exited: ${p.stderr.join('')}`);
      try {
        const i = JSON.parse(await readFile(join(dataDir, NODE_INFO_FILE), 'utf8')) as {
          id: string;
          addrs: string[];
          metrics: string;
          pid: number;
        };
        return i.pid === child.pid ? i : undefined;
      } catch {
        return undefined;
      }
    },
    // Only a bound against a hang: a start that fails ends the process, seen at once above. A
    // node start costs ~1-3 s of CPU; on a loaded 2-core machine (test:stress) it took over 30 s.
    START_BOUND_MS,
    `${name} to start`,
  );
  p.id = info.id;
  p.addr = info.addrs[0]!;
  p.metrics = info.metrics;
  return p;
}

export async function kill9(p: NodeProc): Promise<void> {
  p.child.kill('SIGKILL');
  await p.child;
}

export async function stop(p: NodeProc): Promise<void> {
  p.child.kill('SIGTERM');
  await p.child;
}

/** Runs `pcr ...`; never rejects. */
export async function pcr(
  args: readonly string[],
  timeoutMs = 120_000,
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa(PCR, args, {
    reject: false,
    stdin: 'ignore',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

const clients = new Map<string, Promise<ApiClient>>();

/**
 * An in-test API request to one node over real libp2p. Clients (one libp2p host each) are kept
 * per (node address, secret) and reused; closeClients() stops them.
 */
export async function request(
  p: NodeProc,
  secretFrom: NodeProc,
  req: Request,
  timeoutMs = 10_000,
): Promise<ApiResponse> {
  const secretFile = join(secretFrom.dataDir, CLUSTER_SECRET_FILE);
  const key = `${p.addr} ${secretFile}`;
  let client = clients.get(key);
  if (client === undefined) {
    client = readSecret(secretFile).then((secret) => ApiClient.connect(p.addr, secret));
    clients.set(key, client);
  }
  return (await client).request(req, timeoutMs);
}

export async function closeClients(): Promise<void> {
  const all = [...clients.values()];
  clients.clear();
  for (const c of all) await (await c).close().catch(() => {});
}

export function secretFileOf(p: NodeProc): string {
  return join(p.dataDir, CLUSTER_SECRET_FILE);
}

/**
 * Starts a cluster of real node processes: the first bootstraps, the others join through it with
 * its secret; `args` go to every node. Resolves once every member is in the member table.
 */
export async function startCluster(
  base: string,
  names: readonly string[],
  args: readonly string[] = [],
  /** Each node is pushed here as soon as it runs (so a failed start leaves none untracked). */
  track: NodeProc[] = [],
): Promise<NodeProc[]> {
  const first = await startNode(base, names[0]!, args);
  track.push(first);
  const seed = ['--seed', first.addr, '--secret-file', secretFileOf(first), ...args];
  const rest = [];
  for (const name of names.slice(1)) {
    const p = await startNode(base, name, seed);
    track.push(p);
    rest.push(p);
  }
  const nodes = [first, ...rest];
  await until(
    async () => {
      const r = await request(first, first, { op: 'members' }, 3000).catch(() => undefined);
      return r?.ok === true && (r.members as unknown[]).length === nodes.length ? true : undefined;
    },
    60_000,
    `${nodes.length} members`,
  );
  return nodes;
}
