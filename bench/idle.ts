// npm run bench:idle -- [--nodes 3,10,16] [--seconds 30] [--settle 30]: what an idle member costs.
// For each cluster size, real node processes (bin/pcr node start) form a cluster through one seed;
// the bench prints how long forming took and how many elections it cost, lets the members settle
// for --settle seconds (after start-up V8's memory reducer compacts each heap once, about 0.1-0.2 s
// of CPU per member, which is no steady cost), then leaves the cluster idle for --seconds and
// prints each member's CPU over that window (utime + stime from /proc, so the
// figure is CPU consumed, not wall time: other load on the machine changes it little), the leader
// apart from the followers, and the elections during the idle window (should be 0).
// Anchor: an idle Nomad or Consul agent uses well under 1% of a core; the target here is <= 1%.

import '../node/polyfill.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeClients, kill9, type NodeProc, startCluster, until } from '../test/procs.ts';
import { cpuSeconds, formatTable, machine, machineLine } from './common.ts';

/** Members beyond this many stay learners (the daemon's default maxVoters). */
const VOTERS_MAX = 5;

function parseArgs(argv: readonly string[]): { sizes: number[]; seconds: number; settle: number } {
  let sizes = [3, 10, 16];
  let seconds = 30;
  let settle = 30;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i] ?? '';
    if (a === '--nodes') sizes = v.split(',').map(Number);
    else if (a === '--seconds') seconds = Number(v);
    else if (a === '--settle') settle = Number(v);
    else fail(`unknown option ${a}`);
  }
  if (!sizes.every((n) => Number.isSafeInteger(n) && n >= 1 && n <= 64))
    fail('--nodes takes sizes 1..64, comma-separated');
  if (!Number.isFinite(seconds) || seconds < 1) fail('--seconds takes a number >= 1');
  if (!Number.isFinite(settle) || settle < 0) fail('--settle takes a number >= 0');
  return { sizes, seconds, settle };
}

function fail(why: string): never {
  process.stderr.write(
    `bench:idle: ${why} (options: --nodes 3,10,16, --seconds 30, --settle 30)\n`,
  );
  process.exit(2);
}

async function metric(p: NodeProc, name: string): Promise<number> {
  const text = await (await fetch(p.metrics)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

async function sum(nodes: NodeProc[], name: string): Promise<number> {
  let total = 0;
  for (const p of nodes) total += await metric(p, name);
  return total;
}

interface Row {
  nodes: number;
  formS: string;
  formElections: number;
  leaderPct: string;
  followerMedianPct: string;
  followerMaxPct: string;
  idleElections: number;
  coresUsed: string;
}

async function measure(n: number, seconds: number, settle: number): Promise<Row> {
  const base = await mkdtemp(join(tmpdir(), 'pcr-idle-'));
  const nodes: NodeProc[] = [];
  try {
    const t0 = performance.now();
    const names = Array.from({ length: n }, (_, i) => `n${i + 1}`);
    await startCluster(base, names, [], nodes);
    const voters = Math.min(n, VOTERS_MAX);
    await until(
      async () =>
        (await sum(nodes, 'pcr_raft_is_leader')) === 1 &&
        (await metric(nodes[0]!, 'pcr_raft_voters')) === voters
          ? true
          : undefined,
      120_000,
      `${voters} voters`,
    );
    const formS = ((performance.now() - t0) / 1000).toFixed(1);
    await new Promise((r) => setTimeout(r, settle * 1000));
    const formElections = await sum(nodes, 'pcr_raft_elections_total');
    const before = nodes.map((p) => cpuSeconds(p.child.pid!));
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const used = nodes.map((p, i) => cpuSeconds(p.child.pid!) - before[i]!);
    const idleElections = (await sum(nodes, 'pcr_raft_elections_total')) - formElections;
    const leaderAt = (await Promise.all(nodes.map((p) => metric(p, 'pcr_raft_is_leader')))).indexOf(
      1,
    );
    const pct = (s: number) => (100 * s) / seconds;
    const followers = used
      .filter((_, i) => i !== leaderAt)
      .map(pct)
      .sort((a, b) => a - b);
    return {
      nodes: n,
      formS,
      formElections,
      leaderPct: leaderAt < 0 ? '-' : pct(used[leaderAt]!).toFixed(1),
      followerMedianPct: (followers[Math.floor(followers.length / 2)] ?? 0).toFixed(1),
      followerMaxPct: (followers[followers.length - 1] ?? 0).toFixed(1),
      idleElections,
      coresUsed: (used.reduce((a, b) => a + b, 0) / seconds).toFixed(2),
    };
  } finally {
    await closeClients();
    for (const p of nodes) await kill9(p).catch(() => {});
    await rm(base, { recursive: true, force: true });
  }
}

const { sizes, seconds, settle } = parseArgs(process.argv.slice(2));
process.stdout.write(
  `${machineLine(machine(), `idle members, CPU over ${seconds} s after ${settle} s to settle; target <= 1% of a core per member`)}\n`,
);
const HEADER = [
  'nodes',
  'form s',
  'form elections',
  'leader %',
  'follower median %',
  'follower max %',
  'idle elections',
  'cores used',
];
const cells = (r: Row): string[] => [
  String(r.nodes),
  r.formS,
  String(r.formElections),
  r.leaderPct,
  r.followerMedianPct,
  r.followerMaxPct,
  String(r.idleElections),
  r.coresUsed,
];
// Each size's row as soon as it is measured (a later size that fails to form loses none), then
// the table of all.
const rows: Row[] = [];
for (const n of sizes) {
  const row = await measure(n, seconds, settle);
  rows.push(row);
  process.stdout.write(`${HEADER.map((h, i) => `${h} ${cells(row)[i]}`).join(', ')}\n`);
}
process.stdout.write(`${formatTable(HEADER, rows.map(cells))}\n`);
