// The simulator's command line: one seeded run (--seed) or a sweep (--seeds A..B). For each run it
// prints the operations, availability, virtual latencies, the checker's verdict, safety and
// liveness, the history hash, the speed and the command that replays the run. A sweep prints a
// progress bar (stderr, on a terminal; periodic lines otherwise), every failing seed with its
// replay command, and a summary.
//
// Exit codes: 0 no finding ('unknown' checker verdicts are reported, not failures), 1 a finding
// (a history that is not linearizable, a safety violation, or no liveness after healing), 2 bad
// arguments. Run: npm run sim -- [options]. The simulator is not a `pcr` command: the product
// imports nothing from sim/ (docs/decisions.md).

import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { MembershipSummary } from './membership.ts';
import {
  type Fault,
  isNemesisKind,
  NEMESIS_KINDS,
  NemesisFileError,
  type NemesisKind,
  parseDuration,
  parseSchedule,
} from './nemesis.ts';
import {
  PLACEMENT_GENERIC_KINDS,
  PLACEMENT_RUN_DEFAULTS,
  type PlacementRunResult,
  runPlacementSimulation,
} from './placement-run.ts';
import {
  ROLLOUT_GENERIC_KINDS,
  ROLLOUT_RUN_DEFAULTS,
  type RolloutRunResult,
  runRolloutSimulation,
} from './rollout-run.ts';
import { RUN_DEFAULTS, type RunOptions, type RunResult, runSimulation } from './run.ts';
import { WORKLOAD_DEFAULTS } from './workload.ts';

export const EXIT_OK = 0;
export const EXIT_FINDING = 1;
export const EXIT_USAGE = 2;

/** Bounds on the arguments (a run must stay a run, not a denial of service). */
const NODES_MAX = 25;
const CLIENTS_MAX = 1000;
const RATE_MAX = 100_000;
const TIME_MAX_MS = 3_600_000;
const SEEDS_MAX = 1_000_000;

const usage = (program: string): string => `usage: ${program} [options]

Runs the real Raft node (consensus core, durable storage, state machine, codec) in a deterministic
simulation: virtual time, a simulated network and disks, a nemesis, clients, and the
linearizability checker. One seed replays a run exactly.

options:
  --seed N               one run with this seed (default 1)
  --seeds A..B           a sweep over seeds A to B (inclusive)
  --nodes N              cluster size (default ${RUN_DEFAULTS.nodes})
  --time D               virtual length of the faulty phase, e.g. 30s, 500ms, 2m; a bare number is
                         seconds (default ${RUN_DEFAULTS.timeMs / 1000}s; placement ${PLACEMENT_RUN_DEFAULTS.timeMs / 1000}s,
                         rollout ${ROLLOUT_RUN_DEFAULTS.timeMs / 1000}s)
  --quiet D              virtual time allowed after healing for a leader and a final write
                         (default ${RUN_DEFAULTS.quietMs / 1000}s)
  --nemesis K,K|none     kinds of faults generated from the seed: ${NEMESIS_KINDS.join(', ')}
                         (default ${RUN_DEFAULTS.nemesis.join(',')}); membership starts the cluster
                         as one node that the others join, and removes and restarts members;
                         placement runs the product's placement duty and agents over simulated
                         VMMs with its own nemesis (with partition and crash only; no clients);
                         rollout runs the product's rollout duty on the same nodes, one
                         deployment updated again and again, some versions broken (with
                         partition and crash only; no clients)
  --nemesis-file F       a JSON schedule of faults instead (see docs/sim.md)
  --clients N            concurrent clients (default ${WORKLOAD_DEFAULTS.clients})
  --rate R               operations per second over all clients (default ${WORKLOAD_DEFAULTS.rate})
  --keys N               keys the clients use (default ${WORKLOAD_DEFAULTS.keys})
  --check-timeout D      wall-clock budget of the linearizability check per run (default ${RUN_DEFAULTS.checkTimeoutMs / 1000}s)
  --history F            write the run's history as JSON lines (one run only)
  --json                 print results as JSON
  -h, --help             this text

exit codes: 0 nothing found, 1 a finding (not linearizable, safety violation, not live), 2 bad
arguments`;

export interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Whether stderr is a terminal (progress bar) or not (periodic lines). */
  readonly errIsTty: boolean;
}

const processIo: Io = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  errIsTty: process.stderr.isTTY === true,
};

class UsageError extends Error {}

interface Args {
  readonly seeds: { readonly from: number; readonly to: number };
  readonly sweep: boolean;
  readonly nodes: number;
  readonly timeMs: number;
  readonly quietMs: number;
  readonly nemesis: readonly NemesisKind[];
  readonly nemesisFile: string | undefined;
  readonly schedule: readonly Fault[] | undefined;
  readonly clients: number;
  readonly rate: number;
  readonly keys: number;
  readonly checkTimeoutMs: number;
  readonly historyFile: string | undefined;
  readonly json: boolean;
}

function integer(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} ${text}: expected an integer from ${min} to ${max}`);
  }
  return n;
}

function duration(name: string, text: string, min: number, max: number): number {
  const ms = parseDuration(text, 1000);
  if (ms === undefined) {
    throw new UsageError(`--${name} ${text}: expected a duration such as 30s, 500ms or 2m`);
  }
  if (ms < min || ms > max) {
    throw new UsageError(`--${name} ${text}: must be from ${min} ms to ${max / 1000} s`);
  }
  return ms;
}

function parse(argv: readonly string[]): Args | 'help' {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        seed: { type: 'string' },
        seeds: { type: 'string' },
        nodes: { type: 'string' },
        time: { type: 'string' },
        quiet: { type: 'string' },
        nemesis: { type: 'string' },
        'nemesis-file': { type: 'string' },
        clients: { type: 'string' },
        rate: { type: 'string' },
        keys: { type: 'string' },
        'check-timeout': { type: 'string' },
        history: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help === true) return 'help';
  const s = (k: string): string | undefined => values[k] as string | undefined;

  if (s('seed') !== undefined && s('seeds') !== undefined) {
    throw new UsageError('give --seed N or --seeds A..B, not both');
  }
  let seeds = { from: 1, to: 1 };
  const seedsText = s('seeds');
  if (seedsText !== undefined) {
    const m = /^\s*(\d+)\s*\.\.\s*(\d+)\s*$/.exec(seedsText);
    if (m === null) throw new UsageError(`--seeds ${seedsText}: expected A..B, e.g. 1..200`);
    const from = integer('seeds', m[1]!, 0, Number.MAX_SAFE_INTEGER);
    const to = integer('seeds', m[2]!, 0, Number.MAX_SAFE_INTEGER);
    if (from > to) {
      throw new UsageError(`--seeds ${seedsText}: the range is empty (A must be <= B)`);
    }
    if (to - from + 1 > SEEDS_MAX) {
      throw new UsageError(`--seeds ${seedsText}: at most ${SEEDS_MAX} seeds per sweep`);
    }
    seeds = { from, to };
  } else if (s('seed') !== undefined) {
    const seed = integer('seed', s('seed')!, 0, Number.MAX_SAFE_INTEGER);
    seeds = { from: seed, to: seed };
  }

  const nodes =
    s('nodes') === undefined ? RUN_DEFAULTS.nodes : integer('nodes', s('nodes')!, 1, NODES_MAX);
  const timeMs =
    s('time') === undefined ? RUN_DEFAULTS.timeMs : duration('time', s('time')!, 0, TIME_MAX_MS);
  const quietMs =
    s('quiet') === undefined
      ? RUN_DEFAULTS.quietMs
      : duration('quiet', s('quiet')!, 100, TIME_MAX_MS);
  const checkTimeoutMs =
    s('check-timeout') === undefined
      ? RUN_DEFAULTS.checkTimeoutMs
      : duration('check-timeout', s('check-timeout')!, 1, TIME_MAX_MS);

  if (s('nemesis') !== undefined && s('nemesis-file') !== undefined) {
    throw new UsageError('give --nemesis or --nemesis-file, not both');
  }
  let nemesis: readonly NemesisKind[] = RUN_DEFAULTS.nemesis;
  const nemesisText = s('nemesis');
  if (nemesisText !== undefined) {
    const parts = nemesisText
      .split(',')
      .map((x) => x.trim())
      .filter((x) => x !== '');
    if (parts.length === 1 && parts[0] === 'none') nemesis = [];
    else {
      if (parts.length === 0) throw new UsageError('--nemesis: give kinds, or none');
      for (const p of parts) {
        if (!isNemesisKind(p)) {
          throw new UsageError(
            `--nemesis: unknown kind '${p}'; expected a comma-separated list of ` +
              `${NEMESIS_KINDS.join(', ')}, or none`,
          );
        }
      }
      nemesis = NEMESIS_KINDS.filter((k) => parts.includes(k));
    }
  }
  if (nemesis.includes('placement') && nemesis.includes('rollout')) {
    throw new UsageError(
      '--nemesis placement and rollout are two kinds of runs: give one (a rollout run runs placement too)',
    );
  }
  if (nemesis.includes('rollout')) {
    const other = nemesis.filter((k) => k !== 'rollout' && !ROLLOUT_GENERIC_KINDS.includes(k));
    if (other.length > 0) {
      throw new UsageError(
        `--nemesis rollout combines only with ${ROLLOUT_GENERIC_KINDS.join(', ')}, not ${other.join(', ')} ` +
          '(its nodes run the placement duty, which pause and drift break; docs/sim.md)',
      );
    }
    if (s('history') !== undefined)
      throw new UsageError('--history is not written by rollout runs');
  }
  if (nemesis.includes('placement')) {
    const other = nemesis.filter((k) => k !== 'placement' && !PLACEMENT_GENERIC_KINDS.includes(k));
    if (other.length > 0) {
      throw new UsageError(
        `--nemesis placement combines only with ${PLACEMENT_GENERIC_KINDS.join(', ')}, not ${other.join(', ')} ` +
          '(a paused daemon cannot fence its VMs; drift beyond 5% breaks the fencing bound; docs/sim.md)',
      );
    }
    if (s('history') !== undefined)
      throw new UsageError('--history is not written by placement runs');
  }
  // A placement run needs time for node-down-after (5 s) and a few faults: 30 s unless given.
  // A rollout run needs time for a known-good version and a few more: 90 s unless given.
  const runTimeMs =
    s('time') !== undefined
      ? timeMs
      : nemesis.includes('placement')
        ? PLACEMENT_RUN_DEFAULTS.timeMs
        : nemesis.includes('rollout')
          ? ROLLOUT_RUN_DEFAULTS.timeMs
          : timeMs;
  const nemesisFile = s('nemesis-file');
  let schedule: Fault[] | undefined;
  if (nemesisFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(nemesisFile, 'utf8');
    } catch (e) {
      throw new UsageError(`--nemesis-file ${nemesisFile}: ${(e as Error).message}`);
    }
    try {
      schedule = parseSchedule(
        text,
        Array.from({ length: nodes }, (_, i) => `n${i + 1}`),
      );
    } catch (e) {
      if (e instanceof NemesisFileError)
        throw new UsageError(`--nemesis-file ${nemesisFile}: ${e.message}`);
      throw e;
    }
  }

  const clients =
    s('clients') === undefined
      ? WORKLOAD_DEFAULTS.clients
      : integer('clients', s('clients')!, 1, CLIENTS_MAX);
  let rate: number = WORKLOAD_DEFAULTS.rate;
  if (s('rate') !== undefined) {
    rate = Number(s('rate'));
    if (!(Number.isFinite(rate) && rate > 0 && rate <= RATE_MAX)) {
      throw new UsageError(
        `--rate ${s('rate')}: expected operations per second, > 0 and <= ${RATE_MAX}`,
      );
    }
  }
  const keys =
    s('keys') === undefined ? WORKLOAD_DEFAULTS.keys : integer('keys', s('keys')!, 1, 1000);
  const sweep = seedsText !== undefined;
  const historyFile = s('history');
  if (historyFile !== undefined && sweep && seeds.from !== seeds.to) {
    throw new UsageError('--history writes one run: use it with --seed');
  }
  return {
    seeds,
    sweep,
    nodes,
    timeMs: runTimeMs,
    quietMs,
    nemesis,
    nemesisFile,
    schedule,
    clients,
    rate,
    keys,
    checkTimeoutMs,
    historyFile,
    json: values.json === true,
  };
}

function formatDuration(ms: number): string {
  if (ms % 60_000 === 0 && ms >= 60_000) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** The command that replays one seed of these arguments. */
export function replayCommand(a: Args, seed: number, program = 'npm run sim --'): string {
  const parts = [
    program,
    `--seed ${seed}`,
    `--nodes ${a.nodes}`,
    `--time ${formatDuration(a.timeMs)}`,
    a.nemesisFile !== undefined
      ? `--nemesis-file ${shellQuote(a.nemesisFile)}`
      : `--nemesis ${a.nemesis.length === 0 ? 'none' : a.nemesis.join(',')}`,
    `--clients ${a.clients}`,
    `--rate ${a.rate}`,
  ];
  if (a.keys !== WORKLOAD_DEFAULTS.keys) parts.push(`--keys ${a.keys}`);
  if (a.quietMs !== RUN_DEFAULTS.quietMs) parts.push(`--quiet ${formatDuration(a.quietMs)}`);
  return parts.join(' ');
}

function shellQuote(s: string): string {
  return /^[\w./@%+=:,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function runOptions(a: Args, seed: number): RunOptions {
  return {
    seed,
    nodes: a.nodes,
    timeMs: a.timeMs,
    quietMs: a.quietMs,
    nemesis: a.nemesis,
    ...(a.schedule === undefined ? {} : { schedule: a.schedule }),
    workload: { clients: a.clients, rate: a.rate, keys: a.keys },
    checkTimeoutMs: a.checkTimeoutMs,
  };
}

function pct(x: number): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : 'n/a';
}

function ms(x: number): string {
  return `${x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0)} ms`;
}

/** The findings of a run, one line each (empty when there is none). */
function findings(r: RunResult): string[] {
  const out: string[] = [];
  if (r.check.verdict === 'invalid') out.push(`not linearizable: ${r.check.message ?? ''}`);
  for (const v of r.violations)
    out.push(`safety (${v.kind}) at ${v.timeMs} ms on ${v.node}: ${v.message}`);
  if (r.violationCount > r.violations.length) {
    out.push(`... ${r.violationCount - r.violations.length} more safety violations`);
  }
  if (!r.liveness.ok) out.push(`liveness: ${r.liveness.message}`);
  return out;
}

function describeRun(r: RunResult, a: Args, program: string): string {
  const o = r.ops;
  const lines: string[] = [];
  const nemesis =
    r.nemesis === 'file'
      ? `file ${a.nemesisFile}`
      : r.nemesis.length === 0
        ? 'none'
        : r.nemesis.join(',');
  lines.push(
    `sim seed ${r.seed}: ${r.nodes} nodes, ${formatDuration(r.timeMs)} virtual + ${formatDuration(a.quietMs)} quiet, ` +
      `nemesis ${nemesis}, ${a.clients} clients at ${a.rate} ops/s`,
  );
  lines.push(
    `  ops        ${o.ok} ok, ${o.fail} failed, ${o.info} indeterminate of ${o.invoked}; ` +
      `availability ${pct(r.availability)} (ok / attempted)`,
  );
  const reasons = Object.entries(o.reasons)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k} ${v}`);
  if (reasons.length > 0) lines.push(`  not ok     ${reasons.join(', ')}`);
  lines.push(
    r.latencyMs === undefined
      ? '  latency    no ok operation'
      : `  latency    p50 ${ms(r.latencyMs.p50)}, p95 ${ms(r.latencyMs.p95)}, p99 ${ms(r.latencyMs.p99)} (virtual, ok operations)`,
  );
  const c = r.check;
  lines.push(
    `  checker    ${c.verdict} (${c.operations} operations over ${c.keys} keys, ${ms(c.elapsedMs)})` +
      (c.verdict === 'unknown' && c.message !== undefined ? `: ${c.message}` : ''),
  );
  lines.push(
    `  safety     ${r.violationCount === 0 ? 'no violation' : `${r.violationCount} violations`}` +
      (r.duplicateCommands > 0
        ? `; ${r.duplicateCommands} client commands committed twice, each applied once (client sessions)`
        : ''),
  );
  lines.push(`  liveness   ${r.liveness.ok ? 'ok' : 'FAILED'}: ${r.liveness.message}`);
  if (r.membership !== undefined) lines.push(`  membership ${describeMembership(r.membership)}`);
  const n = r.network;
  lines.push(
    `  faults     ${r.faultsApplied} applied; snapshots ${r.snapshots.taken} taken, ${r.snapshots.installed} installed; ` +
      `${n.sent} messages (${n.dropped.loss} lost, ${n.dropped.partition} cut, ${n.dropped.down} to down nodes, ${n.duplicated} duplicated)`,
  );
  lines.push(`  hash       sha256:${r.hash}`);
  lines.push(
    `  wall       ${(r.wallMs / 1000).toFixed(2)} s for ${(r.virtualMs / 1000).toFixed(1)} virtual s: ` +
      `${r.speed.toFixed(1)}x real time (${r.events} events)`,
  );
  const f = findings(r);
  if (f.length > 0) {
    lines.push('  FINDINGS');
    for (const line of f) lines.push(indent(line, '    '));
  }
  lines.push(`  replay     ${replayCommand(a, r.seed, program)}`);
  return `${lines.join('\n')}\n`;
}

function describeMembership(m: MembershipSummary): string {
  const s = m.stats;
  const list = (xs: readonly string[]): string => (xs.length === 0 ? 'none' : xs.join(' '));
  return (
    `${s.launched} joined, ${s.learnersAdded} learners added, ${s.promotions} promoted ` +
    `(${m.promotionsChecked} checked), ${s.removalsDone}/${s.removalsRequested} removals, ` +
    `${s.exits} stops of removed nodes (${s.removedRestarts} restarted), ${s.joinsRefusedRemoved} ` +
    `joins refused${s.stranded > 0 ? `, ${s.stranded} removed with no known member left (stranded)` : ''}; final voters ${list(m.voters)}, learners ${list(m.learners)}, removed ${list(m.removed)}`
  );
}

function indent(text: string, prefix: string): string {
  return text
    .split('\n')
    .map((l) => prefix + l)
    .join('\n');
}

/** A run for JSON output: everything but the history and the final node details. */
function runJson(r: RunResult, a: Args, program: string): unknown {
  const { history: _h, finalNodes, schedule: _s, ...rest } = r;
  return {
    ...rest,
    finalNodes: finalNodes.map((n) => ({
      id: n.id,
      process: n.process,
      incarnation: n.incarnation,
      role: n.role,
      term: n.term,
      commit: n.commit,
      applied: n.applied,
    })),
    replay: replayCommand(a, r.seed, program),
  };
}

interface SweepTotals {
  runs: number;
  valid: number;
  invalid: number;
  unknown: number;
  unsafe: number;
  notLive: number;
  failedSeeds: number[];
  unknownSeeds: number[];
  ok: number;
  invoked: number;
  virtualMs: number;
  wallMs: number;
  /** Membership runs: joins, promotions, removals and stops of removed nodes, summed. */
  joins: number;
  promotions: number;
  removals: number;
  stops: number;
}

function progressLine(done: number, total: number, t: SweepTotals, elapsedMs: number): string {
  const width = 30;
  const filled = Math.round((done / total) * width);
  const eta = done === 0 ? 0 : ((total - done) * elapsedMs) / done / 1000;
  return (
    `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} seeds, ` +
    `${t.failedSeeds.length} failing, ${t.unknown} unknown, ${(elapsedMs / 1000).toFixed(0)} s, eta ${eta.toFixed(0)} s`
  );
}

export async function main(
  argv: readonly string[],
  io: Io = processIo,
  program = 'npm run sim --',
): Promise<number> {
  let a: Args;
  try {
    const parsed = parse(argv);
    if (parsed === 'help') {
      io.out(`${usage(program)}\n`);
      return EXIT_OK;
    }
    a = parsed;
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`sim: ${e.message}\n(${program} --help for the options)\n`);
      return EXIT_USAGE;
    }
    throw e;
  }

  if (a.nemesis.includes('placement')) return placementMain(a, io, program);
  if (a.nemesis.includes('rollout')) return rolloutMain(a, io, program);

  if (!a.sweep) {
    const r = runSimulation(runOptions(a, a.seeds.from));
    if (a.historyFile !== undefined) {
      writeFileSync(a.historyFile, r.history.map((e) => JSON.stringify(e)).join('\n') + '\n');
    }
    if (a.json) io.out(`${JSON.stringify(runJson(r, a, program), null, 2)}\n`);
    else io.out(describeRun(r, a, program));
    return r.failed ? EXIT_FINDING : EXIT_OK;
  }

  const total = a.seeds.to - a.seeds.from + 1;
  const t: SweepTotals = {
    runs: 0,
    valid: 0,
    invalid: 0,
    unknown: 0,
    unsafe: 0,
    notLive: 0,
    failedSeeds: [],
    unknownSeeds: [],
    ok: 0,
    invoked: 0,
    virtualMs: 0,
    wallMs: 0,
    joins: 0,
    promotions: 0,
    removals: 0,
    stops: 0,
  };
  const runs: unknown[] = [];
  const start = performance.now();
  let lastReport = start;
  for (let seed = a.seeds.from; seed <= a.seeds.to; seed++) {
    const r = runSimulation(runOptions(a, seed));
    t.runs++;
    t[r.check.verdict]++;
    if (r.violationCount > 0) t.unsafe++;
    if (!r.liveness.ok) t.notLive++;
    t.ok += r.ops.ok;
    t.invoked += r.ops.invoked;
    t.virtualMs += r.virtualMs;
    t.wallMs += r.wallMs;
    if (r.membership !== undefined) {
      t.joins += r.membership.stats.learnersAdded;
      t.promotions += r.membership.stats.promotions;
      t.removals += r.membership.stats.removalsDone;
      t.stops += r.membership.stats.exits;
    }
    if (r.check.verdict === 'unknown') t.unknownSeeds.push(seed);
    if (a.json) runs.push(runJson(r, a, program));
    if (r.failed) {
      t.failedSeeds.push(seed);
      if (!a.json) {
        if (io.errIsTty) io.err('\r\x1b[K');
        io.out(
          `FAIL seed ${seed}\n${findings(r)
            .map((l) => indent(l, '  '))
            .join('\n')}\n`,
        );
        io.out(`  replay: ${replayCommand(a, seed, program)}\n`);
      }
    } else if (r.check.verdict === 'unknown' && !a.json) {
      if (io.errIsTty) io.err('\r\x1b[K');
      io.out(
        `unknown seed ${seed}: ${r.check.message ?? ''}\n  replay: ${replayCommand(a, seed, program)}\n`,
      );
    }
    const now = performance.now();
    if (io.errIsTty) io.err(`\r\x1b[K${progressLine(t.runs, total, t, now - start)}`);
    else if (now - lastReport >= 10_000 || t.runs === total) {
      lastReport = now;
      io.err(`sim: ${progressLine(t.runs, total, t, now - start)}\n`);
    }
  }
  if (io.errIsTty) io.err('\n');
  const wallMs = performance.now() - start;
  const summary = {
    seeds: `${a.seeds.from}..${a.seeds.to}`,
    runs: t.runs,
    valid: t.valid,
    invalid: t.invalid,
    unknown: t.unknown,
    safetyViolations: t.unsafe,
    livenessFailures: t.notLive,
    failedSeeds: t.failedSeeds,
    unknownSeeds: t.unknownSeeds,
    availability: t.ok / t.invoked,
    virtualS: t.virtualMs / 1000,
    wallS: wallMs / 1000,
    speed: t.virtualMs / t.wallMs,
    ...(a.nemesis.includes('membership')
      ? {
          membership: {
            learnersAdded: t.joins,
            promotions: t.promotions,
            removals: t.removals,
            removedNodesStopped: t.stops,
          },
        }
      : {}),
  };
  if (a.json) io.out(`${JSON.stringify({ summary, runs }, null, 2)}\n`);
  else {
    io.out(
      `sweep ${summary.seeds}: ${t.runs} runs; checker ${t.valid} valid, ${t.invalid} invalid, ${t.unknown} unknown; ` +
        `${t.unsafe} with safety violations; ${t.notLive} not live after healing\n` +
        `  availability ${pct(summary.availability)}; ${summary.virtualS.toFixed(0)} virtual s in ` +
        `${summary.wallS.toFixed(1)} wall s (${summary.speed.toFixed(1)}x real time)\n` +
        (summary.membership === undefined
          ? ''
          : `  membership ${t.joins} learners added, ${t.promotions} promotions, ${t.removals} ` +
            `removals, ${t.stops} stops of removed nodes\n`) +
        (t.failedSeeds.length === 0
          ? '  no failing seed\n'
          : `  FAILING seeds: ${t.failedSeeds.join(', ')}\n`),
    );
  }
  return t.failedSeeds.length > 0 ? EXIT_FINDING : EXIT_OK;
}

// -----------------------------------------------------------------------------------------------
// Placement runs (sim/placement-run.ts): no clients, their own findings and figures.

function placementRun(a: Args, seed: number): Promise<PlacementRunResult> {
  return runPlacementSimulation({
    seed,
    nodes: a.nodes,
    timeMs: a.timeMs,
    nemesis: a.nemesis.filter((k) => k !== 'placement'),
  });
}

function placementFindings(r: PlacementRunResult): string[] {
  const out = r.violations.map(
    (v) => `safety (${v.kind}) at ${v.timeMs} ms on ${v.node}: ${v.message}`,
  );
  if (r.violationCount > r.violations.length)
    out.push(`... ${r.violationCount - r.violations.length} more safety violations`);
  return out;
}

function describePlacementRun(r: PlacementRunResult, a: Args, program: string): string {
  const s = r.stats;
  const c = r.checks;
  const lines = [
    `sim seed ${r.seed}: ${r.nodes} nodes, ${formatDuration(r.timeMs)} virtual, nemesis ${a.nemesis.join(',')}`,
    `  placement  ${s.placed} placed, ${s.refusedAtApply} refused at apply, ${s.nodesDown} nodes marked down, ` +
      `${s.fences} fences, ${s.drainMoves} drain moves, ${s.failovers} failovers mid-evaluation, ` +
      `${s.vmCrashes} VM crashes, ${s.operatorOps} operator commands`,
    `  checks     ${c.copiesStarted} VMM starts observed, ${c.plannedOverlaps} planned overlaps allowed, ` +
      `${c.placementsChecked} committed placements checked`,
    `  safety     ${r.violationCount === 0 ? 'no violation' : `${r.violationCount} violations`}`,
    `  liveness   ${r.liveness.ok ? 'ok' : 'FAILED'}: ${r.liveness.message}`,
    `  hash       sha256:${r.hash}`,
    `  wall       ${(r.wallMs / 1000).toFixed(2)} s for ${(r.virtualMs / 1000).toFixed(1)} virtual s: ` +
      `${r.speed.toFixed(1)}x real time (${r.events} events)`,
  ];
  const f = placementFindings(r);
  if (f.length > 0) lines.push('  FINDINGS', ...f.map((l) => indent(l, '    ')));
  lines.push(`  replay     ${replayCommand(a, r.seed, program)}`);
  return `${lines.join('\n')}\n`;
}

async function placementMain(a: Args, io: Io, program: string): Promise<number> {
  if (!a.sweep) {
    const r = await placementRun(a, a.seeds.from);
    const { violations, ...rest } = r;
    if (a.json)
      io.out(
        `${JSON.stringify({ ...rest, violations, replay: replayCommand(a, r.seed, program) }, null, 2)}\n`,
      );
    else io.out(describePlacementRun(r, a, program));
    return r.failed ? EXIT_FINDING : EXIT_OK;
  }
  const total = a.seeds.to - a.seeds.from + 1;
  const failed: number[] = [];
  let unsafe = 0;
  let notLive = 0;
  let settleMaxMs = 0;
  let virtualMs = 0;
  const runs: unknown[] = [];
  const start = performance.now();
  let lastReport = start;
  for (let seed = a.seeds.from; seed <= a.seeds.to; seed++) {
    const r = await placementRun(a, seed);
    virtualMs += r.virtualMs;
    if (r.unsafe) unsafe++;
    if (!r.liveness.ok) notLive++;
    settleMaxMs = Math.max(settleMaxMs, r.liveness.settledInMs ?? 0);
    if (a.json) runs.push({ ...r, replay: replayCommand(a, seed, program) });
    if (r.failed) {
      failed.push(seed);
      if (!a.json) {
        if (io.errIsTty) io.err('\r\x1b[K');
        const f = [
          ...placementFindings(r),
          ...(r.liveness.ok ? [] : [`liveness: ${r.liveness.message}`]),
        ];
        io.out(`FAIL seed ${seed}\n${f.map((l) => indent(l, '  ')).join('\n')}\n`);
        io.out(`  replay: ${replayCommand(a, seed, program)}\n`);
      }
    }
    const now = performance.now();
    const done = seed - a.seeds.from + 1;
    const line = `${done}/${total} seeds, ${failed.length} failing, ${((now - start) / 1000).toFixed(0)} s`;
    if (io.errIsTty) io.err(`\r\x1b[K${line}`);
    else if (now - lastReport >= 10_000 || done === total) {
      lastReport = now;
      io.err(`sim: ${line}\n`);
    }
  }
  if (io.errIsTty) io.err('\n');
  const wallS = (performance.now() - start) / 1000;
  const summary = {
    seeds: `${a.seeds.from}..${a.seeds.to}`,
    runs: total,
    safetyViolations: unsafe,
    livenessFailures: notLive,
    failedSeeds: failed,
    settleMaxMs,
    virtualS: virtualMs / 1000,
    wallS,
  };
  if (a.json) io.out(`${JSON.stringify({ summary, runs }, null, 2)}\n`);
  else
    io.out(
      `placement sweep ${summary.seeds}: ${total} runs; ${unsafe} with safety violations; ${notLive} not settled after healing\n` +
        `  slowest settle after the heal ${settleMaxMs} ms; ${summary.virtualS.toFixed(0)} virtual s in ${wallS.toFixed(1)} wall s\n` +
        (failed.length === 0 ? '  no failing seed\n' : `  FAILING seeds: ${failed.join(', ')}\n`),
    );
  return failed.length > 0 ? EXIT_FINDING : EXIT_OK;
}

// -----------------------------------------------------------------------------------------------
// Rollout runs (sim/rollout-run.ts): a placement run's nodes with the rollout duty, no clients.

function rolloutRun(a: Args, seed: number): Promise<RolloutRunResult> {
  return runRolloutSimulation({
    seed,
    nodes: a.nodes,
    timeMs: a.timeMs,
    nemesis: a.nemesis.filter((k) => k !== 'rollout'),
  });
}

function rolloutFindings(r: RolloutRunResult): string[] {
  const out = r.violations.map(
    (v) => `safety (${v.kind}) at ${v.timeMs} ms on ${v.node}: ${v.message}`,
  );
  if (r.violationCount > r.violations.length)
    out.push(`... ${r.violationCount - r.violations.length} more safety violations`);
  if (!r.liveness.ok) out.push(`liveness: ${r.liveness.message}`);
  return out;
}

function describeRolloutRun(r: RolloutRunResult, a: Args, program: string): string {
  const s = r.stats;
  const lines = [
    `sim seed ${r.seed}: ${r.nodes} nodes, ${formatDuration(r.timeMs)} virtual, nemesis ${a.nemesis.join(',')}`,
    `  rollout    ${r.versions} versions submitted (${r.broken} broken), ${s.rolloutSteps} steps, ` +
      `${s.rolloutsSucceeded} rollouts succeeded, ${s.rolloutsFailed} failed (${s.rolloutsReverted} reverted), ` +
      `${s.failovers} failovers during a step`,
    `  placement  ${s.placed} placed, ${s.nodesDown} nodes marked down, ${s.fences} fences, ${s.vmCrashes} VM crashes`,
    `  checks     ${r.stepsChecked} committed steps checked against maxParallel`,
    `  safety     ${r.violationCount === 0 ? 'no violation' : `${r.violationCount} violations`}`,
    `  liveness   ${r.liveness.ok ? 'ok' : 'FAILED'}: ${r.liveness.message}`,
    `  hash       sha256:${r.hash}`,
    `  wall       ${(r.wallMs / 1000).toFixed(2)} s for ${(r.virtualMs / 1000).toFixed(1)} virtual s: ` +
      `${r.speed.toFixed(1)}x real time (${r.events} events)`,
  ];
  const f = rolloutFindings(r);
  if (f.length > 0) lines.push('  FINDINGS', ...f.map((l) => indent(l, '    ')));
  lines.push(`  replay     ${replayCommand(a, r.seed, program)}`);
  return `${lines.join('\n')}\n`;
}

interface RolloutTotals {
  unsafe: number;
  notSettled: number;
  failovers: number;
  reverted: number;
  virtualMs: number;
  failed: number[];
}

async function rolloutMain(a: Args, io: Io, program: string): Promise<number> {
  if (!a.sweep) {
    const r = await rolloutRun(a, a.seeds.from);
    if (a.json)
      io.out(`${JSON.stringify({ ...r, replay: replayCommand(a, r.seed, program) }, null, 2)}\n`);
    else io.out(describeRolloutRun(r, a, program));
    return r.failed ? EXIT_FINDING : EXIT_OK;
  }
  const total = a.seeds.to - a.seeds.from + 1;
  const t: RolloutTotals = {
    unsafe: 0,
    notSettled: 0,
    failovers: 0,
    reverted: 0,
    virtualMs: 0,
    failed: [],
  };
  const runs: unknown[] = [];
  const start = performance.now();
  let lastReport = start;
  for (let seed = a.seeds.from; seed <= a.seeds.to; seed++) {
    const r = await rolloutRun(a, seed);
    t.virtualMs += r.virtualMs;
    if (r.unsafe) t.unsafe++;
    if (!r.liveness.ok) t.notSettled++;
    t.failovers += r.stats.failovers;
    t.reverted += r.stats.rolloutsReverted;
    if (a.json) runs.push({ ...r, replay: replayCommand(a, seed, program) });
    if (r.failed) {
      t.failed.push(seed);
      if (!a.json) {
        if (io.errIsTty) io.err('\r\x1b[K');
        io.out(
          `FAIL seed ${seed}\n${rolloutFindings(r)
            .map((l) => indent(l, '  '))
            .join('\n')}\n`,
        );
        io.out(`  replay: ${replayCommand(a, seed, program)}\n`);
      }
    }
    const now = performance.now();
    const done = seed - a.seeds.from + 1;
    const line = `${done}/${total} seeds, ${t.failed.length} failing, ${((now - start) / 1000).toFixed(0)} s`;
    if (io.errIsTty) io.err(`\r\x1b[K${line}`);
    else if (now - lastReport >= 10_000 || done === total) {
      lastReport = now;
      io.err(`sim: ${line}\n`);
    }
  }
  if (io.errIsTty) io.err('\n');
  io.out(rolloutSummary(a, total, t, (performance.now() - start) / 1000, runs));
  return t.failed.length > 0 ? EXIT_FINDING : EXIT_OK;
}

function rolloutSummary(
  a: Args,
  total: number,
  t: RolloutTotals,
  wallS: number,
  runs: unknown[],
): string {
  const summary = {
    seeds: `${a.seeds.from}..${a.seeds.to}`,
    runs: total,
    safetyViolations: t.unsafe,
    notSettled: t.notSettled,
    failoversDuringSteps: t.failovers,
    failedRolloutsReverted: t.reverted,
    failedSeeds: t.failed,
    virtualS: t.virtualMs / 1000,
    wallS,
  };
  if (a.json) return `${JSON.stringify({ summary, runs }, null, 2)}\n`;
  return (
    `rollout sweep ${summary.seeds}: ${total} runs; ${t.unsafe} with safety violations; ` +
    `${t.notSettled} not settled on a working version after healing\n` +
    `  ${t.failovers} failovers during a step; ${t.reverted} failed rollouts reverted; ` +
    `${summary.virtualS.toFixed(0)} virtual s in ${wallS.toFixed(1)} wall s\n` +
    (t.failed.length === 0 ? '  no failing seed\n' : `  FAILING seeds: ${t.failed.join(', ')}\n`)
  );
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`sim: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
