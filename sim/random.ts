// Randomness of a simulation: every stream is the consensus core's seededRandom, seeded from the
// run's seed and a purpose ("network", "nemesis", "client/3", "raft/n2/1"), so that one stream's
// draws never shift another's: a client that picks differently does not change when a node's
// election timer fires. Nothing here reads Math.random or a clock.

import { createHash } from 'node:crypto';
import { type RandomSource, seededRandom } from '../consensus/index.ts';

const TWO_32 = 2 ** 32;

/** The 32-bit seed of a purpose's stream: the first four bytes of sha256("<seed>/<purpose>"). */
export function forkSeed(seed: number, purpose: string): number {
  return createHash('sha256').update(`${seed}/${purpose}`).digest().readUInt32LE(0);
}

/** A seeded stream with the draws the simulator needs. */
export class SimRandom implements RandomSource {
  private readonly source: RandomSource;

  constructor(seed: number) {
    this.source = seededRandom(seed);
  }

  static fork(seed: number, purpose: string): SimRandom {
    return new SimRandom(forkSeed(seed, purpose));
  }

  /** Uniform integer in [0, n). */
  intn(n: number): number {
    return this.source.intn(n);
  }

  /** Uniform in [0, 1), with 32 bits of resolution. */
  float(): number {
    return this.source.intn(TWO_32) / TWO_32;
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return p > 0 && this.float() < p;
  }

  /** Uniform in [lo, hi). */
  between(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Exponentially distributed with this mean (inverse transform; never infinite). */
  exponential(mean: number): number {
    return -mean * Math.log(1 - this.float());
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.intn(items.length)]!;
  }

  /** A shuffled copy (Fisher-Yates). */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.intn(i + 1);
      const t = out[i]!;
      out[i] = out[j]!;
      out[j] = t;
    }
    return out;
  }
}
