// Figures of one run, from its histories and its nemesis schedule: operations by outcome, latency
// percentiles of the successful ones, availability (the share of operations that succeeded) while
// a fault was on and while none was, and recovery after each heal (from the heal to the first
// successful write or add invoked after it). Pure.

import type { RecordedEvent } from './workload.ts';

export interface NemesisInterval {
  readonly nemesis: string;
  readonly description: string;
  /** ms since the workload began. */
  readonly start: number;
  /** undefined while still on (never in a finished run). */
  readonly end: number | undefined;
}

export interface OpPoint {
  readonly workload: string;
  readonly f: string;
  readonly node: string;
  readonly key: string | undefined;
  readonly start: number;
  readonly end: number;
  readonly outcome: 'ok' | 'fail' | 'info';
}

export interface RunStats {
  readonly operations: number;
  readonly ok: number;
  readonly fail: number;
  readonly info: number;
  readonly latencyP50Ms: number | undefined;
  readonly latencyP99Ms: number | undefined;
  readonly latencyMaxMs: number | undefined;
  /** ok / operations, for operations invoked while some fault was on. */
  readonly availabilityDuringFaults: number | undefined;
  readonly availabilityQuiet: number | undefined;
  /** The same, per nemesis (operations invoked while a fault of that nemesis was on). */
  readonly availabilityByNemesis: Readonly<Record<string, number | undefined>>;
  /** Per heal, ms from the heal to the first ok write (or add) invoked after it. */
  readonly recoveryMs: readonly (number | undefined)[];
  readonly recoveryMaxMs: number | undefined;
}

/** Pairs each workload's events into operation points (completion per process in order). */
export function opPoints(workload: string, events: readonly RecordedEvent[]): OpPoint[] {
  const open = new Map<number, RecordedEvent>();
  const points: OpPoint[] = [];
  for (const e of events) {
    if (e.type === 'invoke') {
      open.set(e.process, e);
      continue;
    }
    const inv = open.get(e.process);
    open.delete(e.process);
    if (inv === undefined) continue;
    points.push({
      workload,
      f: e.f,
      node: e.node,
      key: e.key,
      start: inv.time,
      end: e.time,
      outcome: e.type as OpPoint['outcome'],
    });
  }
  return points.sort((a, b) => a.start - b.start);
}

export function percentile(sorted: readonly number[], q: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const during = (t: number, iv: NemesisInterval): boolean =>
  t >= iv.start && t < (iv.end ?? Number.POSITIVE_INFINITY);

function availability(points: readonly OpPoint[]): number | undefined {
  if (points.length === 0) return undefined;
  return points.filter((p) => p.outcome === 'ok').length / points.length;
}

const isWrite = (p: OpPoint): boolean => p.f === 'write' || p.f === 'cas' || p.f === 'add';

export function runStats(
  points: readonly OpPoint[],
  nemesis: readonly NemesisInterval[],
): RunStats {
  const latencies = points
    .filter((p) => p.outcome === 'ok')
    .map((p) => p.end - p.start)
    .sort((a, b) => a - b);
  const inFault = (p: OpPoint): boolean => nemesis.some((iv) => during(p.start, iv));
  const recoveryMs = nemesis.map((iv) => {
    if (iv.end === undefined) return undefined;
    const first = points
      .filter((p) => isWrite(p) && p.outcome === 'ok' && p.start >= iv.end!)
      .reduce<number | undefined>((m, p) => (m === undefined || p.end < m ? p.end : m), undefined);
    return first === undefined ? undefined : first - iv.end;
  });
  const known = recoveryMs.filter((r): r is number => r !== undefined);
  return {
    operations: points.length,
    ok: points.filter((p) => p.outcome === 'ok').length,
    fail: points.filter((p) => p.outcome === 'fail').length,
    info: points.filter((p) => p.outcome === 'info').length,
    latencyP50Ms: percentile(latencies, 0.5),
    latencyP99Ms: percentile(latencies, 0.99),
    latencyMaxMs: latencies.at(-1),
    availabilityDuringFaults: availability(points.filter(inFault)),
    availabilityQuiet: availability(points.filter((p) => !inFault(p))),
    availabilityByNemesis: Object.fromEntries(
      [...new Set(nemesis.map((iv) => iv.nemesis))].map((name) => [
        name,
        availability(
          points.filter((p) => nemesis.some((iv) => iv.nemesis === name && during(p.start, iv))),
        ),
      ]),
    ),
    recoveryMs,
    recoveryMaxMs: known.length === 0 ? undefined : Math.max(...known),
  };
}
