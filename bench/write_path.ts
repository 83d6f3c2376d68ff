// npm run bench:write-path: where one client's write latency goes. Sequential writes (128-byte
// values) from one client over real libp2p to real node processes: a one-node cluster (the
// client's round trip, one fsync, the apply), then a three-node cluster to the leader and to a
// follower (plus replication: the leader's append to a follower, its fsync and answer, and for a
// follower the hop to the leader and back). The difference is what replication costs on this
// machine; bench:cluster compares the totals with etcd.
// Each case also prints the CPU milliseconds per write of every member and of the client (from
// /proc), so that what limits it is visible: CPU on a shared core, or waiting (disk, hops).
// Usage: npm run bench:write-path -- [--writes 300] [--warmup 2000]

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeClients, type NodeProc, request, startCluster, stop, until } from '../test/procs.ts';
import { cpuSeconds, machine, machineLine, parseOptions } from './common.ts';

const { writes: WRITES, warmup: WARMUP } = parseOptions(process.argv.slice(2), {
  writes: { default: 300, min: 10, integer: true },
  // Writes before each case's measured ones, not counted: fresh Node processes spend their first
  // seconds compiling the hot paths (bench:cluster's --warmup says more).
  warmup: { default: 2000, min: 0, integer: true },
});

interface Latency {
  p50: number;
  p90: number;
  /** CPU milliseconds per write of each member (in `nodes` order), and of this client process. */
  cpuMs: number[];
  clientCpuMs: number;
}

/** The node's own process: `bin/pcr` is a shell script that execs node, so the pid is node's. */
const cpuOf = (n: NodeProc): number => cpuSeconds(n.child.pid!);

async function firstWrite(n: NodeProc, secretFrom: NodeProc): Promise<void> {
  await until(
    async () => {
      const r = await request(n, secretFrom, { op: 'kv.put', key: 'warm', value: 'v' }).catch(
        () => undefined,
      );
      return r?.ok === true ? true : undefined;
    },
    30_000,
    'a first acknowledged write',
  );
}

async function latency(
  n: NodeProc,
  secretFrom: NodeProc,
  nodes: readonly NodeProc[],
): Promise<Latency> {
  await firstWrite(n, secretFrom);
  for (let i = 0; i < WARMUP; i++) {
    const r = await request(n, secretFrom, { op: 'kv.put', key: `w${i % 16}`, value: 'w' });
    if (!r.ok) throw new Error(`warm-up write ${i}: ${r.error.message}`);
  }
  const ms: number[] = [];
  const cpu0 = nodes.map(cpuOf);
  const self0 = process.cpuUsage();
  for (let i = 0; i < WRITES; i++) {
    const t0 = performance.now();
    const r = await request(n, secretFrom, {
      op: 'kv.put',
      key: `k${i % 16}`,
      value: 'v'.repeat(128),
    });
    if (!r.ok) throw new Error(`write ${i}: ${r.error.message}`);
    ms.push(performance.now() - t0);
  }
  const cpuMs = nodes.map((x, i) => ((cpuOf(x) - cpu0[i]!) * 1000) / WRITES);
  const self = process.cpuUsage(self0);
  const clientCpuMs = (self.user + self.system) / 1000 / WRITES;
  ms.sort((a, b) => a - b);
  return {
    p50: ms[Math.floor(ms.length / 2)]!,
    p90: ms[Math.floor(ms.length * 0.9)]!,
    cpuMs,
    clientCpuMs,
  };
}

async function leaderOf(nodes: readonly NodeProc[]): Promise<number> {
  return until(
    async () => {
      for (let i = 0; i < nodes.length; i++) {
        const s = await request(nodes[i]!, nodes[0]!, { op: 'status' }).catch(() => undefined);
        if (s?.ok === true && (s as Record<string, unknown>).state === 'leader') return i;
      }
      return undefined;
    },
    30_000,
    'a leader',
  );
}

const row = (label: string, l: Latency, base?: Latency): string =>
  `  ${label.padEnd(28)} p50 ${l.p50.toFixed(2).padStart(6)} ms  p90 ${l.p90.toFixed(2).padStart(6)} ms` +
  (base === undefined ? '' : `  (+${(l.p50 - base.p50).toFixed(2)} ms p50 over one node)`);

/** CPU per write: the member written to, the others, and the client. */
const cpuRow = (l: Latency, target: number, leader: number): string => {
  const role = (i: number): string =>
    `${i === target ? 'written to' : 'other'}${i === leader ? ', leader' : ''}`;
  const parts = l.cpuMs.map((c, i) => `${c.toFixed(2)} (${role(i)})`);
  return `  ${''.padEnd(28)} CPU ms per write: ${parts.join(', ')}; client ${l.clientCpuMs.toFixed(2)}`;
};

const base = await mkdtemp(join(tmpdir(), 'pcr-bench-write-path-'));
const procs: NodeProc[] = [];
try {
  console.log(
    machineLine(machine(), `${WRITES} sequential writes per case after ${WARMUP}, one client`),
  );
  const one = await startCluster(join(base, 'one'), ['s0'], [], procs);
  const single = await latency(one[0]!, one[0]!, one);
  await stop(one[0]!);
  const three = await startCluster(join(base, 'three'), ['n0', 'n1', 'n2'], [], procs);
  const leader = await leaderOf(three);
  const follower = (leader + 1) % 3;
  const toLeader = await latency(three[leader]!, three[0]!, three);
  const toFollower = await latency(three[follower]!, three[0]!, three);
  console.log(row('one node', single));
  console.log(cpuRow(single, 0, 0));
  console.log(row('three nodes, to the leader', toLeader, single));
  console.log(cpuRow(toLeader, leader, leader));
  console.log(row('three nodes, to a follower', toFollower, single));
  console.log(cpuRow(toFollower, follower, leader));
} finally {
  await closeClients();
  for (const p of procs) if (p.child.exitCode === null) await stop(p).catch(() => {});
  await rm(base, { recursive: true, force: true });
}
