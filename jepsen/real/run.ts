// One Jepsen run against real processes: build the network, start the cluster, run the workloads'
// clients while the nemesis schedule injects faults, heal, read the set on every node, check the
// histories, write the results folder (histories, logs, schedule, verdicts, index.html), and
// remove everything the run created, whatever happened (success, failure, abort).

import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { seededRandom } from '../../consensus/index.ts';
import { until } from '../../test/until.ts';
import {
  type CheckResult,
  casRegister,
  checkEvents,
  pairHistory,
  renderReportHtml,
} from '../checker/index.ts';
import { Cluster, FAKETIME_LIB } from './cluster.ts';
import { applyFault, countRules, healFault } from './faults.ts';
import { describeFault, type Fault, type NemesisName, planFault } from './nemesis.ts';
import {
  createNetwork,
  HarnessError,
  preflight,
  releaseLock,
  removeAll,
  takeLock,
  WORK_DIR_PREFIX,
} from './netns.ts';
import { renderRunReport } from './report.ts';
import { checkSet, type FinalRead, type SetResult } from './set_checker.ts';
import { type NemesisInterval, opPoints, type RunStats, runStats } from './stats.ts';
import {
  type ClientContext,
  KeyPool,
  kvClient,
  type RecordedEvent,
  readSet,
  setAdder,
  setReader,
  sleep,
} from './workload.ts';

export const WORKLOADS = ['kv', 'set'] as const;
export type Workload = (typeof WORKLOADS)[number];

export interface RunOptions {
  readonly nodes: number;
  readonly timeMs: number;
  readonly nemeses: readonly NemesisName[];
  readonly workloads: readonly Workload[];
  readonly seed: number;
  readonly resultsDir: string;
  /** kv clients per node. */
  readonly kvClientsPerNode: number;
  /** kv keys live at once. */
  readonly keys: number;
  /** A client's pause after a successful operation. */
  readonly thinkMs: number;
  /** Between two faults, the network and every process whole. */
  readonly quietMs: number;
  /** How long one fault lasts before it is healed. */
  readonly faultMs: number;
  /** The last stretch of the run with no fault: the cluster must recover in it. */
  readonly finalHealMs: number;
  /** How often the set reader reads during the run. */
  readonly setReadEveryMs: number;
  /** Planted fault: kv and set reads from the node's local state (`stale: true`). */
  readonly staleReads: boolean;
  readonly checkTimeoutMs: number;
  readonly log: (line: string) => void;
  readonly signal?: AbortSignal;
}

export const RUN_DEFAULTS: Omit<RunOptions, 'resultsDir' | 'log'> = {
  nodes: 5,
  timeMs: 60_000,
  nemeses: ['partition', 'kill', 'pause', 'loss'],
  workloads: ['kv', 'set'],
  seed: 1,
  kvClientsPerNode: 2,
  keys: 4,
  thinkMs: 30,
  quietMs: 4_000,
  faultMs: 6_000,
  finalHealMs: 8_000,
  setReadEveryMs: 1_000,
  staleReads: false,
  checkTimeoutMs: 60_000,
};

/** Bound on the cluster's recovery before the final reads (leader known, every node answers). */
export const FINAL_READ_TIMEOUT_MS = 60_000;

export type Verdict = 'valid' | 'invalid' | 'unknown';

export interface RunResult {
  readonly verdict: Verdict;
  readonly kv: CheckResult | undefined;
  readonly set: SetResult | undefined;
  readonly stats: RunStats;
  readonly nemesis: readonly NemesisInterval[];
  readonly resultsDir: string;
  /** DROP rules left in the nodes' chains after the final heal (must be 0). */
  readonly rulesAfterHeal: number;
}

interface Recording {
  readonly kv: RecordedEvent[];
  readonly set: RecordedEvent[];
  readonly intervals: (NemesisInterval & { fault: Fault })[];
  finals: FinalRead[];
}

export async function runJepsen(o: RunOptions): Promise<RunResult> {
  preflight();
  // Without the library, LD_PRELOAD is ignored with a warning and the skew would do nothing.
  if (o.nemeses.includes('skew') && !existsSync(FAKETIME_LIB)) {
    throw new HarnessError(
      `the skew nemesis needs libfaketime (${FAKETIME_LIB}): apt-get install faketime, ` +
        'or leave skew out of --nemesis',
    );
  }
  takeLock();
  const names = Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`);
  let cluster: Cluster | undefined;
  let workDir: string | undefined;
  try {
    // A crashed harness may have left namespaces, links and work dirs: start clean.
    await removeAll();
    workDir = mkdtempSync(WORK_DIR_PREFIX);
    const logDir = join(o.resultsDir, 'logs');
    mkdirSync(logDir, { recursive: true });
    const addrs = await createNetwork(names);
    cluster = new Cluster({
      names,
      addrs,
      workDir,
      logDir,
      skew: o.nemeses.includes('skew'),
      log: o.log,
    });
    o.log(`network: ${names.map((n, i) => `${n} ${addrs[i]}`).join(', ')}; starting nodes`);
    await cluster.start();
    o.log(`cluster formed: ${o.nodes} voters`);
    const rec: Recording = { kv: [], set: [], intervals: [], finals: [] };
    await runWorkloads(cluster, o, rec);
    const rulesAfterHeal = await countRules(cluster);
    await cluster.stop();
    return finish(o, rec, rulesAfterHeal);
  } finally {
    await cluster?.stop().catch(() => {});
    try {
      await removeAll(workDir);
    } finally {
      releaseLock();
    }
  }
}

async function runWorkloads(cluster: Cluster, o: RunOptions, rec: Recording): Promise<void> {
  const t0 = performance.now();
  const now = (): number => Math.round((performance.now() - t0) * 100) / 100;
  const done = (): boolean => now() >= o.timeMs || o.signal?.aborted === true;
  let processes = 0;
  const ctx: ClientContext = {
    cluster,
    random: seededRandom(o.seed + 1),
    now,
    done,
    staleReads: o.staleReads,
    thinkMs: o.thinkMs,
    nextProcess: () => processes++,
  };
  const clients: Promise<void>[] = [];
  if (o.workloads.includes('kv')) {
    const keys = new KeyPool(o.keys);
    for (const n of cluster.nodes) {
      for (let c = 0; c < o.kvClientsPerNode; c++)
        clients.push(kvClient(ctx, n.name, keys, rec.kv));
    }
  }
  if (o.workloads.includes('set')) {
    let element = 0;
    for (const n of cluster.nodes) clients.push(setAdder(ctx, n.name, () => element++, rec.set));
    clients.push(setReader(ctx, o.setReadEveryMs, rec.set));
  }
  await Promise.all([...clients, runNemesis(cluster, o, now, done, rec)]);
  await cluster.healProcesses();
  if (o.workloads.includes('set') && o.signal?.aborted !== true) {
    rec.finals = await finalReads(cluster, o);
  }
}

/** Quiet, fault, heal, ... until the final healed stretch; each fault logged with start and end. */
async function runNemesis(
  cluster: Cluster,
  o: RunOptions,
  now: () => number,
  done: () => boolean,
  rec: Recording,
): Promise<void> {
  if (o.nemeses.length === 0) return;
  const random = seededRandom(o.seed);
  const faultsEnd = o.timeMs - o.finalHealMs;
  for (let i = 0; ; i++) {
    await sleepUnlessAborted(o.quietMs, o.signal);
    if (done() || now() + o.faultMs > faultsEnd) return;
    const name = o.nemeses[i % o.nemeses.length]!;
    const leader = await cluster.leader();
    const fault = planFault(
      name,
      cluster.nodes.map((n) => n.name),
      leader,
      random,
    );
    const interval = {
      nemesis: name,
      description: `${describeFault(fault)} (leader before: ${leader ?? 'none agreed'})`,
      start: now(),
      end: 0,
      fault,
    };
    o.log(`${(interval.start / 1000).toFixed(1)}s nemesis start: ${interval.description}`);
    await applyFault(cluster, fault);
    await sleepUnlessAborted(o.faultMs, o.signal);
    await healFault(cluster, fault);
    interval.end = now();
    rec.intervals.push(interval);
    o.log(`${(interval.end / 1000).toFixed(1)}s nemesis end: ${name}`);
  }
}

/** Sleeps ms, or less if the run is interrupted meanwhile (the fault is then healed at once). */
function sleepUnlessAborted(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (signal === undefined) return sleep(ms);
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

/** After the heal: one linearizable read of the whole set on every node. */
async function finalReads(cluster: Cluster, o: RunOptions): Promise<FinalRead[]> {
  const deadline = Date.now() + FINAL_READ_TIMEOUT_MS;
  const finals: FinalRead[] = [];
  for (const n of cluster.nodes) {
    const elements = await until(
      async () =>
        Date.now() > deadline ? [] : await readSet({ cluster, staleReads: false }, n.name),
      FINAL_READ_TIMEOUT_MS,
      `the final read on ${n.name}`,
      250,
    ).catch(() => undefined);
    const answered = Date.now() <= deadline ? elements : undefined;
    finals.push({ node: n.name, elements: answered });
    o.log(
      `final read on ${n.name}: ${answered === undefined ? 'no answer' : `${answered.length} elements`}`,
    );
  }
  return finals;
}

function finish(o: RunOptions, rec: Recording, rulesAfterHeal: number): RunResult {
  const write = (file: string, text: string): void => writeFileSync(join(o.resultsDir, file), text);
  const lines = (events: readonly unknown[]): string =>
    events.map((e) => JSON.stringify(e)).join('\n') + (events.length > 0 ? '\n' : '');
  let kv: CheckResult | undefined;
  if (o.workloads.includes('kv')) {
    write('history-kv.jsonl', lines(rec.kv));
    kv = checkEvents(casRegister, rec.kv, { timeoutMs: o.checkTimeoutMs });
    const page = renderReportHtml(kv, pairHistory(rec.kv), casRegister, {
      source: 'history-kv.jsonl',
    });
    write('checker.html', page);
  }
  let set: SetResult | undefined;
  if (o.workloads.includes('set')) {
    write('history-set.jsonl', lines(rec.set));
    write('final-reads.json', `${JSON.stringify(rec.finals, null, 1)}\n`);
    set = checkSet(rec.set, rec.finals);
  }
  write('nemesis.jsonl', lines(rec.intervals));
  const points = [...opPoints('kv', rec.kv), ...opPoints('set', rec.set)].sort(
    (a, b) => a.start - b.start,
  );
  const stats = runStats(points, rec.intervals);
  // An interrupted run ran no final reads: only a kv violation still proves something.
  const verdict: Verdict =
    kv?.verdict === 'violation'
      ? 'invalid'
      : o.signal?.aborted === true
        ? 'unknown'
        : set?.valid === false || rulesAfterHeal !== 0
          ? 'invalid'
          : kv?.verdict === 'unknown'
            ? 'unknown'
            : 'valid';
  const result: RunResult = {
    verdict,
    kv,
    set,
    stats,
    nemesis: rec.intervals,
    resultsDir: o.resultsDir,
    rulesAfterHeal,
  };
  write('results.json', `${JSON.stringify(summary(o, result), null, 1)}\n`);
  write('index.html', renderRunReport({ options: o, result, points, kvHistory: rec.kv }));
  return result;
}

/** What results.json holds: the options, the verdicts and the figures. */
export function summary(o: RunOptions, r: RunResult): Record<string, unknown> {
  const { log: _log, signal: _signal, ...options } = o;
  return {
    options,
    verdict: r.verdict,
    kv:
      r.kv === undefined
        ? undefined
        : {
            verdict: r.kv.verdict,
            perKey: r.kv.perKey.map((k) => ({ key: k.key, verdict: k.verdict, ops: k.operations })),
          },
    set:
      r.set === undefined
        ? undefined
        : { ...r.set, lost: r.set.lost.length, stale: r.set.stale.length },
    stats: r.stats,
    rulesAfterHeal: r.rulesAfterHeal,
  };
}
