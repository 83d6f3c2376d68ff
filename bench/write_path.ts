// npm run bench:write-path: where one client's write latency goes. Sequential writes (128-byte
// values) from one client over real libp2p to real node processes: a one-node cluster (the
// client's round trip, one fsync, the apply), then a three-node cluster to the leader and to a
// follower (plus replication: the leader's append to a follower, its fsync and answer, and for a
// follower the hop to the leader and back). The difference is what replication costs on this
// machine; bench:cluster compares the totals with etcd.
// Usage: npm run bench:write-path -- [--writes 300]

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeClients, type NodeProc, request, startCluster, stop, until } from '../test/procs.ts';
import { machine, machineLine, parseOptions } from './common.ts';

const { writes: WRITES } = parseOptions(process.argv.slice(2), {
  writes: { default: 300, min: 10, integer: true },
});

interface Latency {
  p50: number;
  p90: number;
}

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

async function latency(n: NodeProc, secretFrom: NodeProc): Promise<Latency> {
  await firstWrite(n, secretFrom);
  const ms: number[] = [];
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
  ms.sort((a, b) => a - b);
  return { p50: ms[Math.floor(ms.length / 2)]!, p90: ms[Math.floor(ms.length * 0.9)]! };
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

const base = await mkdtemp(join(tmpdir(), 'pcr-bench-write-path-'));
const procs: NodeProc[] = [];
try {
  console.log(machineLine(machine(), `${WRITES} sequential writes per case, one client`));
  const one = await startCluster(join(base, 'one'), ['s0'], [], procs);
  const single = await latency(one[0]!, one[0]!);
  await stop(one[0]!);
  const three = await startCluster(join(base, 'three'), ['n0', 'n1', 'n2'], [], procs);
  const leader = await leaderOf(three);
  const toLeader = await latency(three[leader]!, three[0]!);
  const toFollower = await latency(three[(leader + 1) % 3]!, three[0]!);
  console.log(row('one node', single));
  console.log(row('three nodes, to the leader', toLeader, single));
  console.log(row('three nodes, to a follower', toFollower, single));
} finally {
  await closeClients();
  for (const p of procs) if (p.child.exitCode === null) await stop(p).catch(() => {});
  await rm(base, { recursive: true, force: true });
}
