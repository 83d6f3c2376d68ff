// Metrics gossip: every member publishes its metrics on one gossipsub topic at a fixed interval,
// and keeps a view of the cluster with last-seen times. Gossip is lossy by design: the view is
// for people, placement hints and failure suspicion, never for anything that must not be lost
// (membership and desired state live in Raft). Messages are signed by gossipsub (StrictSign), so
// the publisher's peer ID is authenticated; a message about another node is refused.

import { statfs } from 'node:fs/promises';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { Packr } from 'msgpackr';
import { type SharedTiming, sharedTimingProblem } from '../shared_timing.ts';
import type { Host } from './host.ts';

export const METRICS_TOPIC = '/pcr/metrics/1';
/**
 * Each member receives every other member's message each interval, so an idle member's gossip
 * cost grows with the cluster: at 2 s it was most of an idle member's CPU with 10 nodes
 * (docs/operations.md, "Idle cost"; D14). The view is for people and tie-breaks, so 10 s is enough.
 */
export const GOSSIP_INTERVAL_MS = 10_000;
/** A metrics message larger than this is refused. */
export const METRICS_BYTES_MAX = 8 * 1024;
/** Not heard from in this many intervals: suspect. */
export const SUSPECT_AFTER_INTERVALS = 3;
/** Not heard from in this many intervals: down. */
export const DOWN_AFTER_INTERVALS = 9;

export interface NodeMetrics {
  readonly id: string;
  readonly version: string;
  readonly uptimeS: number;
  readonly cpus: number;
  readonly load1: number;
  readonly memTotal: number;
  readonly memFree: number;
  readonly diskFree: number;
  readonly vmms: readonly string[];
  /** The member's timing values (node/shared_timing.ts); absent from older members. */
  readonly timing?: SharedTiming;
}

export interface ViewEntry {
  readonly metrics: NodeMetrics;
  /** Local wall-clock ms when last heard from. */
  readonly lastSeen: number;
}

export type Health = 'alive' | 'suspect' | 'down';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

function metricsProblem(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null) return 'not an object';
  const m = x as Record<string, unknown>;
  for (const f of ['uptimeS', 'cpus', 'load1', 'memTotal', 'memFree', 'diskFree']) {
    if (typeof m[f] !== 'number' || !Number.isFinite(m[f])) return `${f} is not a number`;
  }
  if (typeof m.id !== 'string' || typeof m.version !== 'string')
    return 'id or version is not a string';
  if (!Array.isArray(m.vmms) || !m.vmms.every((v) => typeof v === 'string'))
    return 'vmms is not a list of strings';
  if (m.timing !== undefined) return sharedTimingProblem(m.timing);
  return undefined;
}

export class Gossip {
  readonly view = new Map<string, ViewEntry>();
  readonly stats = { published: 0, received: 0, refused: 0 };
  private readonly host: Host;
  private readonly collect: () => Promise<NodeMetrics>;
  private readonly intervalMs: number;
  private readonly onMetrics: ((m: NodeMetrics) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  /** `onMetrics` sees each member's metrics as they are accepted (not this node's own). */
  constructor(
    host: Host,
    collect: () => Promise<NodeMetrics>,
    intervalMs = GOSSIP_INTERVAL_MS,
    onMetrics?: (m: NodeMetrics) => void,
  ) {
    this.host = host;
    this.collect = collect;
    this.intervalMs = intervalMs;
    this.onMetrics = onMetrics;
  }

  start(): void {
    const pubsub = this.host.services.pubsub;
    if (pubsub === undefined) throw new Error('gossip needs a host started with gossip: true');
    pubsub.addEventListener('message', (evt) => {
      const msg = evt.detail;
      if (msg.topic !== METRICS_TOPIC) return;
      this.receive(msg.type === 'signed' ? msg.from.toString() : undefined, msg.data);
    });
    pubsub.subscribe(METRICS_TOPIC);
    void this.publish();
    this.timer = setInterval(() => void this.publish(), this.intervalMs);
  }

  /** Handles one received message; exported behaviour for tests of bad input. */
  receive(from: string | undefined, data: Uint8Array): boolean {
    if (from === undefined || data.byteLength > METRICS_BYTES_MAX) {
      this.stats.refused++;
      return false;
    }
    let m: unknown;
    try {
      m = packr.unpack(data);
    } catch {
      this.stats.refused++;
      return false;
    }
    if (metricsProblem(m) !== undefined || (m as NodeMetrics).id !== from) {
      this.stats.refused++;
      return false;
    }
    this.stats.received++;
    this.view.set(from, { metrics: m as NodeMetrics, lastSeen: Date.now() });
    this.onMetrics?.(m as NodeMetrics);
    return true;
  }

  private async publish(): Promise<void> {
    try {
      const m = await this.collect();
      this.view.set(m.id, { metrics: m, lastSeen: Date.now() });
      await this.host.services.pubsub?.publish(METRICS_TOPIC, packr.pack(m));
      this.stats.published++;
    } catch {
      // No peers yet, or stopping: the next interval tries again.
    }
  }

  health(id: string, now = Date.now()): Health {
    const e = this.view.get(id);
    if (e === undefined) return 'down';
    const age = now - e.lastSeen;
    if (age <= SUSPECT_AFTER_INTERVALS * this.intervalMs) return 'alive';
    if (age <= DOWN_AFTER_INTERVALS * this.intervalMs) return 'suspect';
    return 'down';
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

const started = Date.now();

export async function collectMetrics(
  id: string,
  version: string,
  dataDir: string,
  vmms: readonly string[],
  timing?: SharedTiming,
): Promise<NodeMetrics> {
  let diskFree = 0;
  try {
    const s = await statfs(dataDir);
    diskFree = s.bavail * s.bsize;
  } catch {
    // keep 0: unknown
  }
  return {
    id,
    version,
    uptimeS: Math.round((Date.now() - started) / 1000),
    cpus: cpus().length,
    load1: loadavg()[0] ?? 0,
    memTotal: totalmem(),
    memFree: freemem(),
    diskFree,
    vmms: [...vmms],
    ...(timing !== undefined ? { timing } : {}),
  };
}
