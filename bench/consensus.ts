// Throughput of the consensus core alone: one process, in-memory storage (MemoryStorage, no fsync),
// instant delivery (messages are handed over as objects, never encoded), 128-byte proposals. Every
// round the leader proposes a batch, then every node runs one Ready cycle of the caller's contract
// (persist into its storage, send, apply to its state machine, advance) and the queued messages are
// delivered. Logs are compacted as a real node would. An entry counts once the leader applied it;
// at the end every follower must have applied the same entries in the same order.
//
//   npm run bench:consensus -- [--seconds N] [--batch N] [--json]

import { performance } from 'node:perf_hooks';
import { Cluster, type StateMachine } from '../consensus/cluster.ts';
import type { Entry } from '../consensus/types.ts';
import { fmtInt, formatTable, machine, machineLine, parseOptions } from './common.ts';

/** The anchor: committed entries per second of a 3-voter group with batching. */
const TARGET_ENTRIES_PER_S = 100_000;
const PAYLOAD_BYTES = 128;
const WARMUP_SECONDS = 1;
/** A node's tick: 100 ms of wall-clock time, as the product would use. */
const TICK_MS = 100;
const COMPACTION = { everyEntries: 10_000, keepEntries: 5_000 } as const;

interface Case {
  readonly name: string;
  readonly voters: number;
  readonly batch: number;
  readonly target: number | undefined;
}

interface Result {
  readonly case: string;
  readonly voters: number;
  readonly batch: number;
  readonly entries: number;
  readonly seconds: number;
  readonly entriesPerS: number;
  readonly targetEntriesPerS: number | null;
  readonly ratio: number | null;
  /** Mean Ready cycles from proposal to apply on the leader. */
  readonly latencyCycles: number;
  readonly heapUsedMiB: number;
}

/** Counts applied entries and folds their sequence numbers, so replicas can be compared. */
class CountingStateMachine implements StateMachine {
  count = 0;
  digest = 0;
  onApply: ((seq: number) => void) | undefined;

  apply(e: Entry): void {
    const seq = new DataView(e.data.buffer, e.data.byteOffset, 8).getFloat64(0);
    this.count++;
    this.digest = (Math.imul(this.digest, 31) + seq) | 0;
    this.onApply?.(seq);
  }

  snapshot(): Uint8Array {
    const b = new Uint8Array(16);
    const v = new DataView(b.buffer);
    v.setFloat64(0, this.count);
    v.setInt32(8, this.digest);
    return b;
  }

  restore(data: Uint8Array): void {
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.count = v.getFloat64(0);
    this.digest = v.getInt32(8);
  }
}

function payload(seq: number): Uint8Array {
  const b = new Uint8Array(PAYLOAD_BYTES);
  new DataView(b.buffer).setFloat64(0, seq);
  return b;
}

function runCase(c: Case, seconds: number): Result {
  const ids = Array.from({ length: c.voters }, (_, i) => `n${i + 1}`);
  const cluster = new Cluster({
    ids,
    newStateMachine: () => new CountingStateMachine(),
    compaction: COMPACTION,
  });
  const first = cluster.nodes[0]!;
  first.rn.campaign();
  cluster.stabilize();
  const leader = cluster.leader();
  if (leader !== first) throw new Error('the first node did not win the election');

  let seq = 0;
  // Latency: every round proposes one batch, so an entry's proposal round follows from its seq.
  let measureFromSeq = Number.POSITIVE_INFINITY;
  let roundOfSeq0 = 0;
  let latencySum = 0;
  let latencyCount = 0;
  leader.sm.onApply = (s) => {
    if (s < measureFromSeq) return;
    latencySum += cluster.rounds - (roundOfSeq0 + Math.floor(s / c.batch));
    latencyCount++;
  };

  let lastTickMs = performance.now();
  const runFor = (ms: number): void => {
    const end = performance.now() + ms;
    for (;;) {
      const datas: Uint8Array[] = new Array(c.batch);
      for (let i = 0; i < c.batch; i++) datas[i] = payload(seq++);
      leader.rn.proposeEntries(datas);
      cluster.round();
      const now = performance.now();
      if (now - lastTickMs >= TICK_MS) {
        lastTickMs = now;
        cluster.tickAll();
      }
      if (now >= end) return;
    }
  };

  runFor(WARMUP_SECONDS * 1000);
  cluster.stabilize();
  if (cluster.leader() !== leader) throw new Error('leadership changed during the warm-up');
  const before = leader.sm.count;
  // The next proposal (seq) is made in the next round: align the latency clock on it.
  roundOfSeq0 = cluster.rounds - Math.floor(seq / c.batch);
  measureFromSeq = seq;
  const t0 = performance.now();
  runFor(seconds * 1000);
  cluster.stabilize(); // commit and apply what is in flight: part of the measured time
  const elapsedS = (performance.now() - t0) / 1000;
  if (cluster.leader() !== leader) throw new Error('leadership changed during the run');

  const entries = leader.sm.count - before;
  if (leader.sm.count !== seq) {
    throw new Error(`leader applied ${leader.sm.count} entries of ${seq} proposed`);
  }
  for (const n of cluster.nodes) {
    if (n.sm.count !== leader.sm.count || n.sm.digest !== leader.sm.digest) {
      throw new Error(
        `${n.id} applied ${n.sm.count} entries (digest ${n.sm.digest}), leader ${leader.sm.count} (${leader.sm.digest})`,
      );
    }
  }
  const entriesPerS = entries / elapsedS;
  return {
    case: c.name,
    voters: c.voters,
    batch: c.batch,
    entries,
    seconds: elapsedS,
    entriesPerS,
    targetEntriesPerS: c.target ?? null,
    ratio: c.target === undefined ? null : entriesPerS / c.target,
    latencyCycles: latencyCount === 0 ? 0 : latencySum / latencyCount,
    heapUsedMiB: process.memoryUsage().heapUsed / 2 ** 20,
  };
}

function printTable(results: readonly Result[]): void {
  const header = [
    'case',
    'entries committed',
    'seconds',
    'entries/s',
    'target',
    'ratio',
    'latency (cycles)',
  ];
  const rows = results.map((r) => [
    r.case,
    fmtInt(r.entries),
    r.seconds.toFixed(2),
    fmtInt(r.entriesPerS),
    r.targetEntriesPerS === null ? '-' : fmtInt(r.targetEntriesPerS),
    r.ratio === null ? '-' : `${r.ratio.toFixed(2)}x`,
    r.latencyCycles.toFixed(2),
  ]);
  console.log(formatTable(header, rows));
}

function main(): void {
  const { seconds, batch, json } = parseOptions(process.argv.slice(2), {
    seconds: { default: 3, min: 0.1 },
    batch: { default: 64, min: 1, integer: true },
    json: { flag: true },
  });
  const cases: Case[] = [
    { name: `3 voters, batch ${batch}`, voters: 3, batch, target: TARGET_ENTRIES_PER_S },
    { name: `5 voters, batch ${batch}`, voters: 5, batch, target: undefined },
    { name: '3 voters, no batching', voters: 3, batch: 1, target: undefined },
    { name: '5 voters, no batching', voters: 5, batch: 1, target: undefined },
  ];
  const env = machine();
  if (!json) {
    console.log(machineLine(env, 'the run uses one'));
    console.log(
      `${PAYLOAD_BYTES}-byte proposals, MemoryStorage, instant delivery, ` +
        `${WARMUP_SECONDS} s warm-up then ${seconds} s per case; compaction every ` +
        `${COMPACTION.everyEntries} entries keeping ${COMPACTION.keepEntries}`,
    );
    console.log('');
  }
  const results: Result[] = [];
  for (const c of cases) results.push(runCase(c, seconds));
  if (json) {
    console.log(JSON.stringify({ ...env, payloadBytes: PAYLOAD_BYTES, results }, null, 2));
    return;
  }
  printTable(results);
  console.log('');
  console.log(
    'entries committed = applied on the leader within the run (the in-flight tail is drained ' +
      'and counted); every follower applied the same entries in the same order.',
  );
  console.log(
    'latency = Ready cycles from proposal to apply on the leader. The target applies to the ' +
      'batched 3-voter case.',
  );
}

main();
