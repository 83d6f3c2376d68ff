// One Jepsen run against real processes: build the network, start the cluster, run the workloads'
// clients while the nemesis schedule injects faults, heal, read the set on every node, check the
// histories, write the results folder (histories, logs, schedule, verdicts, index.html), and
// remove everything the run created, whatever happened (success, failure, abort).

import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { seededRandom } from '../../consensus/index.ts';
import { until } from '../../test/until.ts';
import { buildTestVm } from '../../test/vmm/fixture.ts';
import { buildRunnerClosure } from '../../test/vmm/runner.ts';
import {
  type CheckResult,
  casRegister,
  checkEvents,
  pairHistory,
  renderReportHtml,
} from '../checker/index.ts';
import { CLUSTER_FORM_TIMEOUT_MS, Cluster, FAKETIME_LIB } from './cluster.ts';
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
import { checkVms, type VmResult, type VmSample } from './vm_checker.ts';
import { vmClient } from './vm_workload.ts';
import { startObserver } from './vmms.ts';
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

export const WORKLOADS = ['kv', 'set', 'vms'] as const;
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
/**
 * The vms workload's node lifecycle: short, and satisfying fencingProblem()'s inequality
 * ((1 s + 2 x 0.3 s + 3 s) x 1.05 = 4.83 s < 5 s), so that faults of a few seconds move VMs.
 */
export const VM_NODE_ARGS = ['--node-down-after', '7s', '--fence-after', '1s'] as const;
/**
 * After the final heal, every VM desired running runs on exactly one node within this (a down
 * node marked ready, a restarted node's hold ended by a read, the placement loop, then a TCG boot
 * on a loaded 2-core machine: measured well under it, docs/jepsen.md).
 */
export const VM_RECOVERY_BOUND_MS = 60_000;
/** The observer keeps sampling this long once every desired VM runs on one node and nothing else runs. */
export const VM_STEADY_MS = 2_000;
/** vms clients (each keeps at most VM_CLIENT_INSTANCES_MAX instances desired running). */
export const VM_CLIENTS = 2;
const PCR = resolve(fileURLToPath(new URL('../../bin/pcr', import.meta.url)));

export type Verdict = 'valid' | 'invalid' | 'unknown';

export interface RunResult {
  readonly verdict: Verdict;
  readonly kv: CheckResult | undefined;
  readonly set: SetResult | undefined;
  readonly vms: VmResult | undefined;
  readonly stats: RunStats;
  readonly nemesis: readonly NemesisInterval[];
  readonly resultsDir: string;
  /** DROP rules left in the nodes' chains after the final heal (must be 0). */
  readonly rulesAfterHeal: number;
}

interface Recording {
  readonly kv: RecordedEvent[];
  readonly set: RecordedEvent[];
  readonly vms: RecordedEvent[];
  readonly intervals: (NemesisInterval & { fault: Fault })[];
  finals: FinalRead[];
  vmSamples: VmSample[];
  /** The instances desired running after the final heal (undefined: the read got no answer). */
  vmDesired: string[] | undefined;
  /** The rows of that final vm.list (name, node, desired, state, placement), for the results. */
  vmFinalRows: unknown[];
  healAt: number;
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
    const vms = o.workloads.includes('vms');
    const runner = vms ? await buildRunner(o) : '';
    const addrs = await createNetwork(names);
    cluster = new Cluster({
      names,
      addrs,
      workDir,
      logDir,
      skew: o.nemeses.includes('skew'),
      ...(vms ? { nodeArgs: VM_NODE_ARGS } : {}),
      log: o.log,
    });
    o.log(`network: ${names.map((n, i) => `${n} ${addrs[i]}`).join(', ')}; starting nodes`);
    await cluster.start();
    o.log(`cluster formed: ${o.nodes} voters`);
    if (vms) await prepareVms(cluster, runner, o);
    const rec: Recording = {
      kv: [],
      set: [],
      vms: [],
      intervals: [],
      finals: [],
      vmSamples: [],
      vmDesired: undefined,
      vmFinalRows: [],
      healAt: 0,
    };
    await runWorkloads(cluster, o, rec, runner);
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

/** The runner closure the vms clients submit: the test VM built with the real Nix. */
async function buildRunner(o: RunOptions): Promise<string> {
  const vm = await buildTestVm();
  const runner = await buildRunnerClosure(vm, `pcrj-${o.seed}`);
  o.log(`vms: runner closure ${runner}`);
  return runner;
}

/** Every node registered and ready, and the runner pushed to the cluster with `pcr store push`. */
async function prepareVms(cluster: Cluster, runner: string, o: RunOptions): Promise<void> {
  const first = cluster.nodes[0]!;
  await until(
    async () => {
      const r = await cluster.request(first.name, { op: 'node.list' }, 3000).catch(() => undefined);
      const rows = r?.ok === true ? (r.nodes as { status: string }[]) : [];
      return rows.length === cluster.nodes.length && rows.every((n) => n.status === 'ready');
    },
    CLUSTER_FORM_TIMEOUT_MS,
    `${cluster.nodes.length} ready nodes`,
    250,
  );
  const push = await execa(
    PCR,
    ['store', 'push', runner, '--addr', first.multiaddr, '--secret-file', cluster.secretFile()],
    { reject: false, stdin: 'ignore', timeout: 120_000 },
  );
  if (push.exitCode !== 0) {
    throw new HarnessError(`pcr store push ${runner} failed: ${push.stderr || push.stdout}`);
  }
  o.log(`vms: ${cluster.nodes.length} nodes ready, runner pushed`);
}

async function runWorkloads(
  cluster: Cluster,
  o: RunOptions,
  rec: Recording,
  runner: string,
): Promise<void> {
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
  const vms = o.workloads.includes('vms');
  const observer = vms ? startObserver(cluster.vmRunDirs(), now) : undefined;
  if (vms) {
    let group = 0;
    for (let c = 0; c < VM_CLIENTS; c++) {
      clients.push(vmClient(ctx, runner, () => `g${group++}`, rec.vms));
    }
  }
  try {
    await Promise.all([...clients, runNemesis(cluster, o, now, done, rec)]);
    await cluster.healProcesses();
    rec.healAt = now();
    if (o.workloads.includes('set') && o.signal?.aborted !== true) {
      rec.finals = await finalReads(cluster, o);
    }
    if (vms && o.signal?.aborted !== true) {
      rec.vmDesired = await finalDesired(cluster, o, rec);
      await vmsSettled(rec, observer!.samples, now, o);
    }
  } finally {
    if (observer !== undefined) rec.vmSamples = await observer.stop();
  }
}

/** After the heal: the instances desired running, by a linearizable vm.list on any node. */
async function finalDesired(
  cluster: Cluster,
  o: RunOptions,
  rec: Recording,
): Promise<string[] | undefined> {
  const rows = await until(
    async () => {
      for (const n of cluster.nodes) {
        const r = await cluster.request(n.name, { op: 'vm.list' }, 3000).catch(() => undefined);
        if (r?.ok === true) return r.vms as { name: string; desired: string }[];
      }
      return undefined;
    },
    FINAL_READ_TIMEOUT_MS,
    'the final vm.list',
    250,
  ).catch(() => undefined);
  rec.vmFinalRows = (rows ?? []).map((r) => {
    const { name, node, desired, state, placement } = r as Record<string, unknown>;
    return { name, node, desired, state, placement };
  });
  const desired = rows?.filter((r) => r.desired === 'running').map((r) => r.name);
  o.log(
    `vms: ${desired === undefined ? 'no answer to the final vm.list' : `${desired.length} desired running after the heal`}`,
  );
  return desired;
}

/**
 * Lets the observer run until every desired instance has run on exactly one node, with nothing
 * else running, for VM_STEADY_MS, or until VM_RECOVERY_BOUND_MS after the heal.
 */
async function vmsSettled(
  rec: Recording,
  samples: readonly VmSample[],
  now: () => number,
  o: RunOptions,
): Promise<void> {
  const desired = new Set(rec.vmDesired ?? []);
  let steadySince: number | undefined;
  while (now() - rec.healAt < VM_RECOVERY_BOUND_MS && o.signal?.aborted !== true) {
    const last = samples.at(-1);
    const nodesOf = new Map<string, Set<string>>();
    for (const v of last?.seen ?? []) {
      if (!v.frozen) nodesOf.set(v.instance, (nodesOf.get(v.instance) ?? new Set()).add(v.node));
    }
    const settled =
      [...desired].every((i) => nodesOf.get(i)?.size === 1) &&
      [...nodesOf.keys()].every((i) => desired.has(i));
    steadySince = settled ? (steadySince ?? now()) : undefined;
    if (steadySince !== undefined && now() - steadySince >= VM_STEADY_MS) break;
    await sleep(200);
  }
  o.log(
    `vms: ${steadySince === undefined ? 'not settled' : 'settled'} ${((now() - rec.healAt) / 1000).toFixed(1)} s after the heal`,
  );
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
  let vms: VmResult | undefined;
  if (o.workloads.includes('vms')) {
    write('history-vms.jsonl', lines(rec.vms));
    write('vm-samples.jsonl', lines(rec.vmSamples));
    write('final-vms.json', `${JSON.stringify(rec.vmFinalRows, null, 1)}\n`);
    vms = checkVms({
      history: rec.vms,
      samples: rec.vmSamples,
      finalDesired: rec.vmDesired,
      healAt: rec.healAt,
      boundMs: VM_RECOVERY_BOUND_MS,
    });
  }
  write('nemesis.jsonl', lines(rec.intervals));
  const points = [
    ...opPoints('kv', rec.kv),
    ...opPoints('set', rec.set),
    ...opPoints('vms', rec.vms),
  ].sort((a, b) => a.start - b.start);
  const stats = runStats(points, rec.intervals);
  // An interrupted run ran no final reads: only a kv violation still proves something.
  const verdict: Verdict =
    kv?.verdict === 'violation'
      ? 'invalid'
      : o.signal?.aborted === true
        ? 'unknown'
        : set?.valid === false || vms?.valid === false || rulesAfterHeal !== 0
          ? 'invalid'
          : kv?.verdict === 'unknown'
            ? 'unknown'
            : 'valid';
  const result: RunResult = {
    verdict,
    kv,
    set,
    vms,
    stats,
    nemesis: rec.intervals,
    resultsDir: o.resultsDir,
    rulesAfterHeal,
  };
  write('results.json', `${JSON.stringify(summary(o, result), null, 1)}\n`);
  write(
    'index.html',
    renderRunReport({
      options: o,
      result,
      points,
      kvHistory: rec.kv,
      vmSamples: rec.vmSamples,
    }),
  );
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
    vms: r.vms,
    stats: r.stats,
    rulesAfterHeal: r.rulesAfterHeal,
  };
}
