// The simulated network between nodes. Every message goes through the product's wire codec
// (node/raft/codec.ts): it is encoded when sent and decoded when it arrives, so the simulator
// delivers exactly what a real transport would. Each copy travels for a random latency (a base
// plus an exponential tail, capped), so messages overtake each other (reordering); a message may
// be lost or duplicated. A partition (topology.ts) is checked when a message arrives, as a
// firewall on the receiving side would (Jepsen drops on INPUT): a message in flight when a
// partition starts is lost, one sent before a heal arrives if it lands after it.
//
// What happens at arrival (the receiver is down, paused...) is the cluster's business: the
// network only hands the bytes over or says why it dropped them.

import type { Message } from '../consensus/index.ts';
import { encodeMessage } from '../node/raft/codec.ts';
import { type EventQueue, msToUs } from './queue.ts';
import type { SimRandom } from './random.ts';
import type { Topology } from './topology.ts';

export interface NetworkOptions {
  /** Every message takes at least this long. */
  readonly latencyBaseMs: number;
  /** Mean of the exponential part of the latency (the tail; 0 for a fixed latency). */
  readonly latencyTailMeanMs: number;
  /** No message takes longer than this (bounds the tail). */
  readonly latencyMaxMs: number;
  /** Probability that a message is lost. */
  readonly dropProbability: number;
  /** Probability that a message is delivered twice (two independent latencies). */
  readonly duplicateProbability: number;
}

export const NETWORK_DEFAULTS: NetworkOptions = {
  latencyBaseMs: 1,
  latencyTailMeanMs: 2,
  latencyMaxMs: 100,
  dropProbability: 0.01,
  duplicateProbability: 0.005,
};

export type DropReason = 'loss' | 'partition' | 'down' | 'inboxFull' | 'undecodable';

export interface NetworkStats {
  sent: number;
  bytes: number;
  duplicated: number;
  /** Handed to the receiving node (or queued for it while it is paused). */
  arrived: number;
  dropped: Record<DropReason, number>;
}

export interface Arrival {
  readonly from: number;
  /** The sender's incarnation when it sent (reports go back only to that incarnation). */
  readonly fromIncarnation: number;
  readonly to: number;
  readonly bytes: Uint8Array;
  readonly isSnapshot: boolean;
}

export interface NetworkHooks {
  /** A copy arrived through the partition filter. */
  arrive(a: Arrival): void;
  /** A copy was lost on the way ('loss') or cut by a partition ('partition'). */
  dropped(a: Arrival, reason: 'loss' | 'partition'): void;
}

export class SimNetwork {
  readonly stats: NetworkStats = {
    sent: 0,
    bytes: 0,
    duplicated: 0,
    arrived: 0,
    dropped: { loss: 0, partition: 0, down: 0, inboxFull: 0, undecodable: 0 },
  };
  private readonly queue: EventQueue;
  private readonly random: SimRandom;
  private readonly topology: Topology;
  private readonly options: NetworkOptions;
  private readonly hooks: NetworkHooks;
  private readonly indexOf: ReadonlyMap<string, number>;
  private readonly baseUs: number;
  private readonly maxUs: number;

  constructor(
    queue: EventQueue,
    random: SimRandom,
    topology: Topology,
    options: NetworkOptions,
    hooks: NetworkHooks,
  ) {
    this.queue = queue;
    this.random = random;
    this.topology = topology;
    this.options = options;
    this.hooks = hooks;
    this.indexOf = new Map(topology.ids.map((id, i) => [id, i]));
    this.baseUs = msToUs(options.latencyBaseMs);
    this.maxUs = Math.max(this.baseUs, msToUs(options.latencyMaxMs));
  }

  /** One latency draw, in microseconds. */
  latencyUs(): number {
    const tail = this.options.latencyTailMeanMs;
    const extra = tail > 0 ? msToUs(this.random.exponential(tail)) : 0;
    return Math.max(1, Math.min(this.maxUs, this.baseUs + extra));
  }

  send(from: number, fromIncarnation: number, m: Message): void {
    const to = this.indexOf.get(m.to);
    if (to === undefined) throw new Error(`simulated network: message to unknown node ${m.to}`);
    const bytes = encodeMessage(m);
    this.stats.sent++;
    this.stats.bytes += bytes.byteLength;
    const a: Arrival = { from, fromIncarnation, to, bytes, isSnapshot: m.type === 'MsgSnap' };
    if (this.random.chance(this.options.dropProbability)) {
      this.stats.dropped.loss++;
      this.queue.after(this.latencyUs(), () => this.hooks.dropped(a, 'loss'));
      return;
    }
    this.queue.after(this.latencyUs(), () => this.land(a));
    if (this.random.chance(this.options.duplicateProbability)) {
      this.stats.duplicated++;
      this.queue.after(this.latencyUs(), () => this.land(a));
    }
  }

  private land(a: Arrival): void {
    if (!this.topology.connected(a.from, a.to)) {
      this.stats.dropped.partition++;
      this.hooks.dropped(a, 'partition');
      return;
    }
    this.stats.arrived++;
    this.hooks.arrive(a);
  }
}
