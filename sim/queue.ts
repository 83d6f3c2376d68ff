// The simulator's clock and agenda: a binary min-heap of events ordered by (time, seq), where seq
// is the order in which events were scheduled. Two events at the same virtual time therefore run
// in the order they were scheduled, always, which is what makes a run replayable. Time is kept in
// integer microseconds, so sums of latencies are exact; the API speaks milliseconds.

export type Action = () => void;

/** Virtual microseconds per millisecond. */
export const US_PER_MS = 1000;

export function msToUs(ms: number): number {
  return Math.round(ms * US_PER_MS);
}

export function usToMs(us: number): number {
  return us / US_PER_MS;
}

export class EventQueue {
  /** The current virtual time, in microseconds. */
  now = 0;
  /** Events run so far. */
  executed = 0;
  // Struct of arrays: the heap order is kept on times/seqs, actions move along.
  private times: number[] = [];
  private seqs: number[] = [];
  private actions: Action[] = [];
  private seq = 0;

  get size(): number {
    return this.times.length;
  }

  /** Schedules an action at an absolute virtual time (never in the past). */
  at(timeUs: number, action: Action): void {
    const t = Math.max(timeUs, this.now);
    const seq = this.seq++;
    const times = this.times;
    const seqs = this.seqs;
    const actions = this.actions;
    let i = times.length;
    times.push(t);
    seqs.push(seq);
    actions.push(action);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pt = times[p]!;
      if (pt < t || (pt === t && seqs[p]! < seq)) break;
      times[i] = pt;
      seqs[i] = seqs[p]!;
      actions[i] = actions[p]!;
      i = p;
    }
    times[i] = t;
    seqs[i] = seq;
    actions[i] = action;
  }

  /** Schedules an action after a delay, in microseconds. */
  after(delayUs: number, action: Action): void {
    this.at(this.now + delayUs, action);
  }

  /** The time of the next event, or undefined when there is none. */
  peekTime(): number | undefined {
    return this.times[0];
  }

  /** Runs the next event if it is due at or before `untilUs`; false if there is none. */
  step(untilUs: number): boolean {
    const times = this.times;
    if (times.length === 0 || times[0]! > untilUs) return false;
    const action = this.pop();
    action();
    return true;
  }

  private pop(): Action {
    const times = this.times;
    const seqs = this.seqs;
    const actions = this.actions;
    const top = actions[0]!;
    this.now = times[0]!;
    this.executed++;
    const lastT = times.pop()!;
    const lastS = seqs.pop()!;
    const lastA = actions.pop()!;
    const n = times.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let c = l;
        if (r < n && (times[r]! < times[l]! || (times[r] === times[l] && seqs[r]! < seqs[l]!))) {
          c = r;
        }
        const ct = times[c]!;
        if (lastT < ct || (lastT === ct && lastS < seqs[c]!)) break;
        times[i] = ct;
        seqs[i] = seqs[c]!;
        actions[i] = actions[c]!;
        i = c;
      }
      times[i] = lastT;
      seqs[i] = lastS;
      actions[i] = lastA;
    }
    return top;
  }
}
