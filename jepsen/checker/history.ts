// Histories as Jepsen and Knossos record them, and their pairing into operations.
//
// A history is a list of events. A client process invokes an operation ('invoke') and later learns
// its outcome: 'ok' (it took effect, with this result), 'fail' (it certainly did not take effect)
// or 'info' (indeterminate: it may or may not take effect, at any time after its invocation, so it
// is treated as completing at +infinity). An invocation with no completion at the end of the
// history is indeterminate too. This module owns the event and operation types, their validation
// and JSON-lines parsing; what an operation means is the model's business (model.ts).

import { CheckerError } from './errors.ts';

export type EventType = 'invoke' | 'ok' | 'fail' | 'info';

export interface HistoryEvent {
  readonly type: EventType;
  /** The client that ran the operation; one operation at a time per process. */
  readonly process: number;
  /** The operation's name: 'read', 'write', 'cas' for the key-value models. */
  readonly f: string;
  readonly key?: string;
  /** On 'invoke', the operation's input; on a completion, its output. */
  readonly value: unknown;
  /** Any monotonic unit (virtual time in the simulator). Equal times count as concurrent. */
  readonly time: number;
}

export type Outcome = 'ok' | 'fail' | 'info';

export interface Operation {
  /** Position in PairedHistory.operations (invocation order): a stable id for reports. */
  readonly id: number;
  readonly process: number;
  readonly f: string;
  readonly key: string | undefined;
  /** The invocation's value. */
  readonly input: unknown;
  /** The completion's value; undefined when the operation never completed. */
  readonly output: unknown;
  readonly outcome: Outcome;
  readonly call: number;
  /** The completion's time; +Infinity for an indeterminate ('info') operation. */
  readonly return: number;
  /** For 'info': when the client stopped waiting (undefined if it never completed at all). */
  readonly gaveUpAt: number | undefined;
}

export interface PairedHistory {
  /** Every operation, 'fail' ones included (the checker ignores them, the timeline shows them). */
  readonly operations: readonly Operation[];
  readonly counts: {
    readonly events: number;
    readonly ok: number;
    readonly fail: number;
    /** Completed as 'info'. */
    readonly info: number;
    /** Invoked but never completed: indeterminate, like 'info'. */
    readonly pending: number;
  };
}

export interface PairOptions {
  /** How to name event i in error messages; the JSON-lines parser passes "line N". */
  readonly positionOf?: (index: number) => string;
}

const EVENT_TYPES: ReadonlySet<string> = new Set(['invoke', 'ok', 'fail', 'info']);

interface Outstanding {
  readonly id: number;
  readonly event: HistoryEvent;
  readonly index: number;
}

/** Checks one event's fields; throws BAD_EVENT naming the field and the event's position. */
export function validateEvent(raw: unknown, position: string): HistoryEvent {
  const bad = (what: string): never => {
    throw new CheckerError('BAD_EVENT', `${position}: ${what}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return bad('an event must be an object like {"type":"invoke","process":0,"f":"read",...}');
  }
  const e = raw as Record<string, unknown>;
  if (typeof e.type !== 'string' || !EVENT_TYPES.has(e.type)) {
    return bad(`type is ${JSON.stringify(e.type)}; expected "invoke", "ok", "fail" or "info"`);
  }
  if (typeof e.process !== 'number' || !Number.isSafeInteger(e.process)) {
    return bad(`process is ${JSON.stringify(e.process)}; expected an integer`);
  }
  if (typeof e.f !== 'string' || e.f.length === 0) {
    return bad(`f is ${JSON.stringify(e.f)}; expected an operation name such as "read"`);
  }
  if (e.key !== undefined && typeof e.key !== 'string') {
    return bad(`key is ${JSON.stringify(e.key)}; expected a string (or no key)`);
  }
  if (typeof e.time !== 'number' || !Number.isFinite(e.time)) {
    return bad(`time is ${JSON.stringify(e.time)}; expected a finite number`);
  }
  return raw as HistoryEvent;
}

function describeEvent(e: HistoryEvent): string {
  const key = e.key === undefined ? '' : ` on key ${JSON.stringify(e.key)}`;
  return `'${e.f}'${key}`;
}

/**
 * Pairs each invocation with its completion. Events of one process must appear in the order they
 * happened (the list as a whole need not be sorted by time). Throws a CheckerError on the first
 * problem: a completion without an invocation, a second invocation while one is outstanding, a
 * completion that does not match its invocation, or time going backwards within a process.
 */
export function pairHistory(events: readonly unknown[], options: PairOptions = {}): PairedHistory {
  const positionOf = options.positionOf ?? ((i: number) => `event ${i + 1}`);
  const outstanding = new Map<number, Outstanding>();
  /** Processes whose last operation ended 'info': that operation never ends, so they are done. */
  const retired = new Map<number, { event: HistoryEvent; index: number }>();
  const lastTime = new Map<number, number>();
  const invocations: HistoryEvent[] = [];
  const completions: (HistoryEvent | undefined)[] = [];
  let ok = 0;
  let fail = 0;
  let info = 0;

  events.forEach((raw, index) => {
    const position = positionOf(index);
    const e = validateEvent(raw, position);
    const before = lastTime.get(e.process);
    if (before !== undefined && e.time < before) {
      throw new CheckerError(
        'BAD_ORDER',
        `${position}: process ${e.process} goes back in time (t=${e.time} after t=${before}); ` +
          'list each process’s events in the order they happened',
      );
    }
    lastTime.set(e.process, e.time);
    const open = outstanding.get(e.process);
    if (e.type === 'invoke') {
      if (open !== undefined) {
        throw new CheckerError(
          'BAD_ORDER',
          `${position}: process ${e.process} invokes ${describeEvent(e)} at t=${e.time} while its ` +
            `${describeEvent(open.event)} invoked at t=${open.event.time} (${positionOf(open.index)}) ` +
            'is still outstanding: a process runs one operation at a time',
        );
      }
      const gone = retired.get(e.process);
      if (gone !== undefined) {
        throw new CheckerError(
          'BAD_ORDER',
          `${position}: process ${e.process} invokes ${describeEvent(e)} after its ` +
            `${describeEvent(gone.event)} ended 'info' (${positionOf(gone.index)}): an ` +
            'indeterminate operation never ends, so its process must not be reused; give the ' +
            'client a new process number, as Jepsen does',
        );
      }
      outstanding.set(e.process, { id: invocations.length, event: e, index });
      invocations.push(e);
      completions.push(undefined);
      return;
    }
    if (open === undefined) {
      throw new CheckerError(
        'UNMATCHED_COMPLETION',
        `${position}: process ${e.process} completes ${describeEvent(e)} with '${e.type}' but has ` +
          'no outstanding invocation; every completion must follow an invoke of the same process',
      );
    }
    if (open.event.f !== e.f || open.event.key !== e.key) {
      throw new CheckerError(
        'MISMATCHED_COMPLETION',
        `${position}: process ${e.process} completes ${describeEvent(e)} but invoked ` +
          `${describeEvent(open.event)} (${positionOf(open.index)}); f and key must match`,
      );
    }
    outstanding.delete(e.process);
    completions[open.id] = e;
    if (e.type === 'ok') ok++;
    else if (e.type === 'fail') fail++;
    else {
      info++;
      retired.set(e.process, { event: e, index });
    }
  });

  const operations: Operation[] = invocations.map((inv, id) => {
    const done = completions[id];
    const outcome: Outcome = done === undefined ? 'info' : (done.type as Outcome);
    return {
      id,
      process: inv.process,
      f: inv.f,
      key: inv.key,
      input: inv.value,
      output: done?.value,
      outcome,
      call: inv.time,
      return: outcome === 'info' ? Number.POSITIVE_INFINITY : done!.time,
      gaveUpAt: outcome === 'info' ? done?.time : undefined,
    };
  });
  return {
    operations,
    counts: { events: events.length, ok, fail, info, pending: outstanding.size },
  };
}

export interface ParsedHistory {
  readonly events: readonly HistoryEvent[];
  /** The 1-based line of each event in the text. */
  readonly lines: readonly number[];
}

/**
 * Parses JSON lines: one event object per line; blank lines and lines starting with '#' are
 * skipped. A numeric key is taken as its decimal string (Maelstrom's lin-kv uses integer keys).
 */
export function parseHistoryJsonLines(text: string): ParsedHistory {
  const events: HistoryEvent[] = [];
  const lines: number[] = [];
  text.split('\n').forEach((line, i) => {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    let raw: unknown;
    try {
      raw = JSON.parse(trimmed);
    } catch (err) {
      throw new CheckerError(
        'BAD_EVENT',
        `line ${i + 1}: not valid JSON (${(err as Error).message}); each line holds one event`,
      );
    }
    if (
      typeof raw === 'object' &&
      raw !== null &&
      typeof (raw as { key?: unknown }).key === 'number'
    ) {
      raw = { ...raw, key: String((raw as { key: number }).key) };
    }
    events.push(validateEvent(raw, `line ${i + 1}`));
    lines.push(i + 1);
  });
  return { events, lines };
}

/** Formats an operation's interval for people: "t=3..7", "t=3..∞ (indeterminate)". */
export function describeInterval(op: Operation): string {
  if (op.outcome !== 'info') return `t=${op.call}..${op.return}`;
  const gaveUp = op.gaveUpAt === undefined ? 'never completed' : `gave up at t=${op.gaveUpAt}`;
  return `t=${op.call}..∞ (indeterminate, ${gaveUp})`;
}
