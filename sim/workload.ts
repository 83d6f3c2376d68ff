// Clients of a simulated cluster and the history they record, in the format of jepsen/checker
// (history.ts): invoke, then ok / fail / info, with process, f, key, value and virtual time (ms).
//
// Each client is a single-threaded process in Jepsen's sense: one operation outstanding at a
// time. It waits an exponentially distributed think time (so the cluster sees about `rate`
// operations per second in total while clients keep up), picks an operation (read, write or cas
// on one of a few keys, small integers as strings) and a node that is not down (a client learns
// that from refused connections; it cannot tell a paused node from a slow one), and sends the
// request over a client link (the network's latency distribution, no loss, no partition: clients
// sit outside the cluster like Jepsen's control node). A request the client gets no answer to
// within `timeoutMs` is indeterminate for a write or cas ('info') and simply failed for a read
// (reads have no effect). After an 'info' the client continues as a new process, as the checker
// requires (a process never reuses its number after an indeterminate operation).
//
// Outcome mapping (RaftNode -> history): ok -> ok (a cas refused by the state machine, casMismatch
// or notFound, is a definite 'fail'; a read of a missing key is an ok read of null); NO_LEADER,
// PROPOSAL_DROPPED, INVALID and a refused connection -> fail; TIMEOUT and STOPPED -> info for
// writes and cas (they may still take effect), fail for reads.

import type { HistoryEvent } from '../jepsen/checker/index.ts';
import type { Outcome } from '../node/raft/node.ts';
import type { SimCluster } from './cluster.ts';
import { msToUs, usToMs } from './queue.ts';
import { SimRandom } from './random.ts';

export interface WorkloadOptions {
  /** Concurrent client processes. */
  readonly clients: number;
  /** Operations per second over all clients (Poisson arrivals while clients keep up). */
  readonly rate: number;
  /** Keys k0..k(keys-1). */
  readonly keys: number;
  /** Values are "0".."values-1". */
  readonly values: number;
  /** Relative weights of the operations. */
  readonly mix: { readonly read: number; readonly write: number; readonly cas: number };
  /** A client gives up on a request after this long (virtual). */
  readonly timeoutMs: number;
  /** One-way latency of a client link: base plus an exponential tail. */
  readonly linkBaseMs: number;
  readonly linkTailMeanMs: number;
}

export const WORKLOAD_DEFAULTS: WorkloadOptions = {
  clients: 10,
  rate: 100,
  keys: 3,
  values: 5,
  mix: { read: 0.4, write: 0.3, cas: 0.3 },
  timeoutMs: 1000,
  linkBaseMs: 0.5,
  linkTailMeanMs: 1,
};

/** A nemesis record in the full history: Jepsen's process :nemesis. */
export interface NemesisEvent {
  readonly type: 'info';
  readonly process: 'nemesis';
  readonly f: string;
  readonly value: unknown;
  readonly time: number;
}

export type RunEvent = HistoryEvent | NemesisEvent;

/** The history of a run: client operations and nemesis actions, in the order they happened. */
export class History {
  readonly events: RunEvent[] = [];

  add(e: RunEvent): void {
    this.events.push(e);
  }

  /** The client operations only: what the linearizability checker reads. */
  clientEvents(): HistoryEvent[] {
    return this.events.filter((e): e is HistoryEvent => typeof e.process === 'number');
  }
}

export type OpName = 'read' | 'write' | 'cas';

export interface OpCounts {
  invoked: number;
  ok: number;
  fail: number;
  info: number;
  /** Why operations failed or were indeterminate: a RaftNode error code, the state machine's
   * refusal of a cas (casMismatch, notFound), or 'clientTimeout'. */
  reasons: Record<string, number>;
}

interface InFlight {
  readonly process: number;
  readonly f: OpName;
  readonly key: string;
  readonly input: string | [string, string] | null;
  readonly callUs: number;
  /** Counted in counts and okLatenciesMs (the workload's own operations). */
  readonly tally: boolean;
  done: boolean;
}

/** What a client does after an operation: continue as `process` (a new one after 'info'). */
export type Then = (process: number, type: 'ok' | 'fail' | 'info') => void;

/** Drives the clients; stop() makes them issue nothing new (outstanding operations finish). */
export class Workload {
  readonly counts: OpCounts = { invoked: 0, ok: 0, fail: 0, info: 0, reasons: {} };
  /** Virtual latencies (ms) of the operations that completed 'ok'. */
  readonly okLatenciesMs: number[] = [];
  private readonly cluster: SimCluster;
  private readonly history: History;
  private readonly options: WorkloadOptions;
  private readonly linkRandom: SimRandom;
  private nextProcess: number;
  private stopped = false;
  private inFlight = 0;

  constructor(cluster: SimCluster, history: History, options: WorkloadOptions) {
    if (!(Number.isSafeInteger(options.clients) && options.clients >= 1)) {
      throw new RangeError(`clients must be a positive integer, got ${options.clients}`);
    }
    if (!(options.rate > 0)) throw new RangeError(`rate must be > 0, got ${options.rate}`);
    this.cluster = cluster;
    this.history = history;
    this.options = options;
    this.linkRandom = SimRandom.fork(cluster.seed, 'client-links');
    this.nextProcess = options.clients;
  }

  /** Starts every client (its first operation after a think time). */
  start(): void {
    for (let c = 0; c < this.options.clients; c++) {
      const random = SimRandom.fork(this.cluster.seed, `client/${c}`);
      this.think(random, c, 0);
    }
  }

  stop(): void {
    this.stopped = true;
  }

  /** Operations invoked and not yet completed. */
  get outstanding(): number {
    return this.inFlight;
  }

  /** A process number no client uses (for operations issued outside the workload). */
  newProcess(): number {
    return this.nextProcess++;
  }

  /**
   * The next operation of a client starts an exponential think time after the previous one
   * started, or as soon as it completes if that is later: about `rate` operations per second in
   * total while operations are faster than the think time, fewer when clients wait on them.
   */
  private think(random: SimRandom, process: number, lastCallUs: number): void {
    if (this.stopped) return;
    const q = this.cluster.queue;
    const meanMs = (1000 * this.options.clients) / this.options.rate;
    const at = Math.max(q.now + 1, lastCallUs + msToUs(random.exponential(meanMs)));
    q.at(at, () => {
      if (!this.stopped) this.invoke(random, process);
    });
  }

  private invoke(random: SimRandom, process: number): void {
    const { keys, values, mix } = this.options;
    const key = `k${random.intn(keys)}`;
    const value = (): string => String(random.intn(values));
    const total = mix.read + mix.write + mix.cas;
    const x = random.float() * total;
    const f: OpName = x < mix.read ? 'read' : x < mix.read + mix.write ? 'write' : 'cas';
    const input: InFlight['input'] =
      f === 'read' ? null : f === 'write' ? value() : [value(), value()];
    const candidates = this.cluster.ids.filter((id) => this.cluster.processOf(id) !== 'down');
    const node = random.pick(candidates.length > 0 ? candidates : this.cluster.ids);
    const callUs = this.cluster.queue.now;
    this.operate(node, f, key, input, process, (next) => this.think(random, next, callUs), true);
  }

  /**
   * Runs one operation of `process` against `node` through a client link and records it; `then`
   * gets the process number to continue with (a new one after 'info') and the outcome. `tally`
   * false keeps it out of counts and latencies (an operation of the run, not of the workload).
   */
  operate(
    node: string,
    f: OpName,
    key: string,
    input: InFlight['input'],
    process: number,
    then: Then,
    tally = false,
  ): void {
    const q = this.cluster.queue;
    const op: InFlight = { process, f, key, input, callUs: q.now, tally, done: false };
    if (tally) this.counts.invoked++;
    this.inFlight++;
    this.history.add({ type: 'invoke', process, f, key, value: input, time: usToMs(q.now) });
    q.after(this.linkUs(), () => {
      const answer = (o: Outcome): void => {
        q.after(this.linkUs(), () => this.complete(op, o, then));
      };
      if (f === 'read') this.cluster.read(node, { op: 'kv.get', key }, answer);
      else if (f === 'write') {
        this.cluster.submit(node, { op: 'kv.put', key, value: input as string }, answer);
      } else {
        const [from, to] = input as [string, string];
        this.cluster.submit(node, { op: 'kv.cas', key, from, to }, answer);
      }
    });
    q.after(msToUs(this.options.timeoutMs), () => {
      if (op.done) return;
      this.finish(op, f === 'read' ? 'fail' : 'info', input, then, 'clientTimeout');
    });
  }

  private complete(op: InFlight, o: Outcome, then: Then): void {
    if (op.done) return; // the client gave up already
    if (o.ok) {
      const r = o.result;
      if (op.f === 'read') {
        if (r.ok) return this.finish(op, 'ok', r.value ?? null, then);
        if (r.code === 'notFound') return this.finish(op, 'ok', null, then);
        return this.finish(op, 'fail', op.input, then, r.code);
      }
      if (r.ok) return this.finish(op, 'ok', op.input, then);
      // casMismatch / notFound: the state machine refused it, definitely.
      return this.finish(op, 'fail', op.input, then, r.code);
    }
    const type = o.indeterminate && op.f !== 'read' ? 'info' : 'fail';
    this.finish(op, type, op.input, then, o.code);
  }

  private finish(
    op: InFlight,
    type: 'ok' | 'fail' | 'info',
    value: unknown,
    then: Then,
    reason?: string,
  ): void {
    op.done = true;
    this.inFlight--;
    const q = this.cluster.queue;
    if (op.tally) {
      this.counts[type]++;
      if (reason !== undefined)
        this.counts.reasons[reason] = (this.counts.reasons[reason] ?? 0) + 1;
      if (type === 'ok') this.okLatenciesMs.push(usToMs(q.now - op.callUs));
    }
    this.history.add({
      type,
      process: op.process,
      f: op.f,
      key: op.key,
      value,
      time: usToMs(q.now),
    });
    then(type === 'info' ? this.newProcess() : op.process, type);
  }

  private linkUs(): number {
    const { linkBaseMs, linkTailMeanMs } = this.options;
    const tail = linkTailMeanMs > 0 ? this.linkRandom.exponential(linkTailMeanMs) : 0;
    return Math.max(1, msToUs(linkBaseMs + Math.min(tail, 100)));
  }
}
