// npm run bench:idle -- [--nodes 3,10,16] [--seconds 30] [--settle 30] [--later 600]: what an idle
// member costs.
// For each cluster size, real node processes (bin/pcr node start) form a cluster through one seed;
// the bench prints how long forming took and how many elections it cost, lets the members settle
// for --settle seconds (after start-up V8's memory reducer compacts each heap once, about 0.1-0.2 s
// of CPU per member, which is no steady cost), then leaves the cluster idle for --seconds and
// prints each member's CPU over that window (utime + stime from /proc, so the
// figure is CPU consumed, not wall time: other load on the machine changes it little), the leader
// apart from the followers, the learners' median apart too (beyond 5 members; D48 heartbeats them
// less often), and the elections during the idle window (should be 0).
// --later S measures a second window of --seconds, S seconds after forming: an idle member's
// code runs so rarely that V8 takes minutes to optimize it (TurboFan still compiled a fifth of an
// idle member's CPU two minutes after start), so the first window shows the warm-up and the later
// one what a member costs for as long as it runs.
// Anchor: an idle Nomad or Consul agent uses well under 1% of a core; the target here is <= 1%.

import '../node/polyfill.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeClients, kill9, type NodeProc, request, startCluster, until } from '../test/procs.ts';
import { cpuSeconds, formatTable, machine, machineLine } from './common.ts';

/** Members beyond this many stay learners (the daemon's default maxVoters). */
const VOTERS_MAX = 5;

interface Args {
  sizes: number[];
  seconds: number;
  settle: number;
  /** Seconds after forming to start the second window; 0: no second window. */
  later: number;
}

function parseArgs(argv: readonly string[]): Args {
  let sizes = [3, 10, 16];
  let seconds = 30;
  let settle = 30;
  let later = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i] ?? '';
    if (a === '--nodes') sizes = v.split(',').map(Number);
    else if (a === '--seconds') seconds = Number(v);
    else if (a === '--settle') settle = Number(v);
    else if (a === '--later') later = Number(v);
    else fail(`unknown option ${a}`);
  }
  if (!sizes.every((n) => Number.isSafeInteger(n) && n >= 1 && n <= 64))
    fail('--nodes takes sizes 1..64, comma-separated');
  if (!Number.isFinite(seconds) || seconds < 1) fail('--seconds takes a number >= 1');
  if (!Number.isFinite(settle) || settle < 0) fail('--settle takes a number >= 0');
  if (!Number.isFinite(later) || (later !== 0 && later < settle + seconds))
    fail('--later takes 0 (no second window) or seconds >= --settle + --seconds');
  return { sizes, seconds, settle, later };
}

function fail(why: string): never {
  process.stderr.write(
    `bench:idle: ${why} (options: --nodes 3,10,16, --seconds 30, --settle 30, --later 0)\n`,
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

/** CPU of the members over one window. */
interface Window {
  leaderPct: string;
  followerMedianPct: string;
  followerMaxPct: string;
  /** The learners' median ('-' with no learners). */
  learnerMedianPct: string;
  elections: number;
  coresUsed: string;
}

interface Row {
  nodes: number;
  formS: string;
  formElections: number;
  first: Window;
  /** The window --later seconds after forming, if asked for. */
  later: Window | undefined;
}

const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));

async function window(nodes: NodeProc[], seconds: number): Promise<Window> {
  const electionsBefore = await sum(nodes, 'pcr_raft_elections_total');
  const before = nodes.map((p) => cpuSeconds(p.child.pid!));
  await sleep(seconds);
  const used = nodes.map((p, i) => cpuSeconds(p.child.pid!) - before[i]!);
  const elections = (await sum(nodes, 'pcr_raft_elections_total')) - electionsBefore;
  const { leader, learners } = await roles(nodes);
  const leaderAt = nodes.findIndex((p) => p.id === leader);
  const pct = (s: number) => (100 * s) / seconds;
  const median = (xs: number[]) => xs[Math.floor(xs.length / 2)];
  const followers = used
    .filter((_, i) => i !== leaderAt)
    .map(pct)
    .sort((a, b) => a - b);
  const learnerPcts = used
    .filter((_, i) => learners.has(nodes[i]!.id))
    .map(pct)
    .sort((a, b) => a - b);
  const learnerMedian = median(learnerPcts);
  return {
    leaderPct: leaderAt < 0 ? '-' : pct(used[leaderAt]!).toFixed(1),
    followerMedianPct: (median(followers) ?? 0).toFixed(1),
    followerMaxPct: (followers[followers.length - 1] ?? 0).toFixed(1),
    learnerMedianPct: learnerMedian === undefined ? '-' : learnerMedian.toFixed(1),
    elections,
    coresUsed: (used.reduce((a, b) => a + b, 0) / seconds).toFixed(2),
  };
}

/** The leader and the learners, as the first member sees them (one `members` request). */
async function roles(nodes: NodeProc[]): Promise<{ leader?: string; learners: Set<string> }> {
  const r = await request(nodes[0]!, nodes[0]!, { op: 'members' });
  const members = (r.ok ? r.members : []) as { id: string; role: string; leader: boolean }[];
  const leader = members.find((m) => m.leader)?.id;
  return {
    ...(leader !== undefined ? { leader } : {}),
    learners: new Set(members.filter((m) => m.role === 'learner').map((m) => m.id)),
  };
}

async function measure(n: number, a: Args): Promise<Row> {
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
    const formed = performance.now();
    const formS = ((formed - t0) / 1000).toFixed(1);
    await sleep(a.settle);
    const formElections = await sum(nodes, 'pcr_raft_elections_total');
    const first = await window(nodes, a.seconds);
    let later: Window | undefined;
    if (a.later > 0) {
      await sleep(Math.max(0, a.later - (performance.now() - formed) / 1000));
      later = await window(nodes, a.seconds);
    }
    return { nodes: n, formS, formElections, first, later };
  } finally {
    await closeClients();
    for (const p of nodes) await kill9(p).catch(() => {});
    await rm(base, { recursive: true, force: true });
  }
}

const args = parseArgs(process.argv.slice(2));
const windows =
  args.later > 0
    ? `CPU over ${args.seconds} s after ${args.settle} s to settle, and again ${args.later} s after forming`
    : `CPU over ${args.seconds} s after ${args.settle} s to settle`;
process.stdout.write(
  `${machineLine(machine(), `idle members, ${windows}; target <= 1% of a core per member`)}\n`,
);
const windowHeader = (w: string): string[] => [
  `leader %${w}`,
  `follower median %${w}`,
  `follower max %${w}`,
  `learner median %${w}`,
  `idle elections${w}`,
  `cores used${w}`,
];
const windowCells = (w: Window): string[] => [
  w.leaderPct,
  w.followerMedianPct,
  w.followerMaxPct,
  w.learnerMedianPct,
  String(w.elections),
  w.coresUsed,
];
const HEADER = [
  'nodes',
  'form s',
  'form elections',
  ...windowHeader(''),
  ...(args.later > 0 ? windowHeader(` at ${args.later} s`) : []),
];
const cells = (r: Row): string[] => [
  String(r.nodes),
  r.formS,
  String(r.formElections),
  ...windowCells(r.first),
  ...(r.later !== undefined ? windowCells(r.later) : []),
];
// Each size's row as soon as it is measured (a later size that fails to form loses none), then
// the table of all.
const rows: Row[] = [];
for (const n of args.sizes) {
  const row = await measure(n, args);
  rows.push(row);
  process.stdout.write(`${HEADER.map((h, i) => `${h} ${cells(row)[i]}`).join(', ')}\n`);
}
process.stdout.write(`${formatTable(HEADER, rows.map(cells))}\n`);
