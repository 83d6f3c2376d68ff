// A lin-kv test in the manner of `maelstrom test -w lin-kv --nemesis partition`, over the Router:
// concurrent clients send read, write and cas to random nodes and record a Jepsen history
// (jepsen/checker/history.ts), a nemesis cuts the network into random halves and heals it, and
// at the end the history is checked for linearizability (one cas-register per key).
//
// How replies are recorded (as Maelstrom's lin-kv client does, but keeping refusals as
// observations where they are definite facts about the register):
//   read_ok -> ok (value);  read error 20 -> ok, value null (absent)
//   write_ok / cas_ok -> ok;  cas error 20 or 22 -> ok with the error body (checked: the register
//   was absent / held another value at some instant of the call)
//   error 10, 11, 12, 14 -> fail (definite: not performed);  error 0, 13, others, and a client
//   timeout -> info (indeterminate), after which the client takes a new process number.

import { type RandomSource, seededRandom } from '../../consensus/index.ts';
import type { Body } from '../../node/maelstrom/protocol.ts';
import {
  type CheckResult,
  casRegister,
  checkEvents,
  type EventType,
  type HistoryEvent,
} from '../checker/index.ts';
import { Router, type RouterOptions } from './router.ts';

/** Error codes after which a request certainly had no effect (Maelstrom's known failures). */
const DEFINITE_ERRORS: ReadonlySet<number> = new Set([1, 10, 11, 12, 14, 20, 21, 22]);

export interface LinKvTestOptions {
  readonly nodeCount: number;
  /** Length of the workload. */
  readonly timeMs: number;
  readonly clients: number;
  readonly nemesis: 'none' | 'partition';
  /** Time between nemesis actions (partition, heal, partition, ...). */
  readonly nemesisIntervalMs: number;
  /** The last stretch of the run with the network whole, so that the cluster must recover. */
  readonly finalHealMs: number;
  readonly keys: number;
  /** Values written are 0..values-1. */
  readonly values: number;
  /** A client gives up on a request after this (Maelstrom's lin-kv client: 1000 ms). */
  readonly requestTimeoutMs: number;
  /** Pause between a client's operations. */
  readonly thinkMs: number;
  readonly latencyMs?: RouterOptions['latencyMs'];
  readonly command?: RouterOptions['command'];
  /** Seeds the workload and the nemesis (not the processes' timing, so runs are not replayable). */
  readonly seed: number;
  readonly checkTimeoutMs: number;
  readonly log?: (line: string) => void;
  readonly onNodeLog?: RouterOptions['onNodeLog'];
}

export const LIN_KV_TEST_DEFAULTS: Omit<LinKvTestOptions, 'seed'> = {
  nodeCount: 3,
  timeMs: 20_000,
  clients: 4,
  nemesis: 'partition',
  nemesisIntervalMs: 3_000,
  finalHealMs: 4_000,
  keys: 3,
  values: 5,
  requestTimeoutMs: 1_000,
  thinkMs: 10,
  checkTimeoutMs: 30_000,
};

export interface NemesisEvent {
  /** ms since the workload started. */
  readonly timeMs: number;
  readonly action: 'partition' | 'heal';
  readonly groups?: readonly (readonly string[])[];
}

export interface Counts {
  ok: number;
  fail: number;
  info: number;
}

export interface LinKvTestReport {
  /** The seed of the workload and the nemesis. */
  readonly seed: number;
  readonly history: readonly HistoryEvent[];
  readonly counts: Counts & { readonly byF: Record<string, Counts> };
  /** ok completions of operations invoked after the last heal. */
  readonly okAfterFinalHeal: number;
  readonly finalHealAtMs: number | undefined;
  readonly nemesis: readonly NemesisEvent[];
  readonly check: CheckResult;
  readonly router: Router['stats'];
  /** Nodes that died or wrote garbage during the run. */
  readonly problems: readonly string[];
  readonly elapsedMs: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runLinKvTest(options: Partial<LinKvTestOptions>): Promise<LinKvTestReport> {
  const o: LinKvTestOptions = {
    ...LIN_KV_TEST_DEFAULTS,
    seed: Date.now() % 2 ** 31,
    ...options,
  };
  const random = seededRandom(o.seed);
  const log = o.log ?? (() => {});
  const started = performance.now();
  const router = await Router.start({
    nodeCount: o.nodeCount,
    random,
    ...(o.latencyMs === undefined ? {} : { latencyMs: o.latencyMs }),
    ...(o.command === undefined ? {} : { command: o.command }),
    ...(o.onNodeLog === undefined ? {} : { onNodeLog: o.onNodeLog }),
  });
  log(`${o.nodeCount} nodes initialized in ${Math.round(performance.now() - started)} ms`);
  const t0 = performance.now();
  const now = (): number => performance.now() - t0;
  const history: HistoryEvent[] = [];
  const nemesis: NemesisEvent[] = [];
  let finalHealAtMs: number | undefined;
  try {
    const clients = Array.from({ length: o.clients }, (_, i) =>
      runClient(router, o, i, random, now, history),
    );
    const nemesisDone =
      o.nemesis === 'partition'
        ? runPartitionNemesis(router, o, now, nemesis, log)
        : Promise.resolve();
    await Promise.all([...clients, nemesisDone]);
    finalHealAtMs = nemesis.findLast((e) => e.action === 'heal')?.timeMs;
  } finally {
    await router.stop();
  }
  const counts = countOutcomes(history);
  const invokedAt = new Map<number, number>();
  let okAfterFinalHeal = 0;
  for (const e of history) {
    if (e.type === 'invoke') invokedAt.set(e.process, e.time);
    else if (
      e.type === 'ok' &&
      (finalHealAtMs === undefined || invokedAt.get(e.process)! >= finalHealAtMs)
    )
      okAfterFinalHeal++;
  }
  const checkStarted = performance.now();
  const check = checkEvents(casRegister, history, { timeoutMs: o.checkTimeoutMs });
  log(`checked ${history.length} events in ${Math.round(performance.now() - checkStarted)} ms`);
  return {
    seed: o.seed,
    history,
    counts,
    okAfterFinalHeal,
    finalHealAtMs,
    nemesis,
    check,
    router: router.stats,
    problems: router.problems,
    elapsedMs: performance.now() - started,
  };
}

/** One client: operations back to back on random nodes until the time is up. */
async function runClient(
  router: Router,
  o: LinKvTestOptions,
  index: number,
  random: RandomSource,
  now: () => number,
  history: HistoryEvent[],
): Promise<void> {
  const client = `c${index + 1}`;
  let process = index;
  while (now() < o.timeMs) {
    const key = random.intn(o.keys);
    const node = router.nodeIds[random.intn(router.nodeIds.length)]!;
    const op = randomOperation(random, o.values);
    const record = (type: EventType, value: unknown): void => {
      history.push({ type, process, f: op.f, key: String(key), value, time: now() });
    };
    record('invoke', op.value);
    const r = await router.request(client, node, { ...op.body, key }, o.requestTimeoutMs);
    const [type, value] = r.ok ? completion(op.f, op.value, r.body) : ['info' as const, op.value];
    record(type, value);
    // Jepsen's rule: an indeterminate operation never ends, so its process is retired.
    if (type === 'info') process += o.clients;
    if (o.thinkMs > 0) await sleep(o.thinkMs);
  }
}

interface Op {
  readonly f: 'read' | 'write' | 'cas';
  readonly value: unknown;
  readonly body: Body;
}

function randomOperation(random: RandomSource, values: number): Op {
  switch (random.intn(3)) {
    case 0:
      return { f: 'read', value: null, body: { type: 'read' } };
    case 1: {
      const v = random.intn(values);
      return { f: 'write', value: v, body: { type: 'write', value: v } };
    }
    default: {
      const from = random.intn(values);
      const to = random.intn(values);
      return { f: 'cas', value: [from, to], body: { type: 'cas', from, to } };
    }
  }
}

/** The completion event's type and value for a reply body. */
export function completion(f: Op['f'], input: unknown, body: Body): [EventType, unknown] {
  if (body.type === 'error') {
    const code = typeof body.code === 'number' ? body.code : -1;
    if (f === 'read' && code === 20) return ['ok', null];
    if (f === 'cas' && (code === 20 || code === 22)) return ['ok', { type: 'error', code }];
    return [DEFINITE_ERRORS.has(code) ? 'fail' : 'info', input];
  }
  const expected = `${f}_ok`;
  if (body.type !== expected) return ['info', input]; // a reply we cannot read: outcome unknown
  return ['ok', f === 'read' ? (body.value ?? null) : input];
}

/** Partition into random halves, heal, and so on; the last finalHealMs the network is whole. */
async function runPartitionNemesis(
  router: Router,
  o: LinKvTestOptions,
  now: () => number,
  events: NemesisEvent[],
  log: (line: string) => void,
): Promise<void> {
  const stopAtMs = o.timeMs - o.finalHealMs;
  let partitioned = false;
  for (;;) {
    const next = now() + o.nemesisIntervalMs;
    if (next >= stopAtMs) break;
    await sleep(next - now());
    if (partitioned) {
      router.heal();
      events.push({ timeMs: now(), action: 'heal' });
      log(`t=${(now() / 1000).toFixed(1)}s heal`);
    } else {
      const groups = router.partitionRandomHalves();
      events.push({ timeMs: now(), action: 'partition', groups });
      log(
        `t=${(now() / 1000).toFixed(1)}s partition ${groups.map((g) => `[${g.join(' ')}]`).join(' ')}`,
      );
    }
    partitioned = !partitioned;
  }
  if (partitioned || events.length === 0) {
    await sleep(Math.max(0, stopAtMs - now()));
    router.heal();
    events.push({ timeMs: now(), action: 'heal' });
    log(`t=${(now() / 1000).toFixed(1)}s heal (final)`);
  }
}

function countOutcomes(history: readonly HistoryEvent[]): Counts & { byF: Record<string, Counts> } {
  const total: Counts = { ok: 0, fail: 0, info: 0 };
  const byF: Record<string, Counts> = {};
  for (const e of history) {
    if (e.type === 'invoke') continue;
    total[e.type]++;
    byF[e.f] ??= { ok: 0, fail: 0, info: 0 };
    byF[e.f]![e.type]++;
  }
  return { ...total, byF };
}
