// Injected randomness. The core never calls Math.random: the caller passes a RandomSource, and the
// same seed gives the same elections. `seededRandom` is a small, fast, well-distributed generator
// (SplitMix32 seeding a xoshiro128**), good enough for timeouts and simulations, not for secrets.

export interface RandomSource {
  /** A uniformly distributed integer in [0, n). n must be a positive safe integer <= 2^32. */
  intn(n: number): number;
}

export function seededRandom(seed: number): RandomSource {
  let s = seed >>> 0;
  const splitmix = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = splitmix();
  let b = splitmix();
  let c = splitmix();
  let d = splitmix();
  if ((a | b | c | d) === 0) a = 1;
  const next = (): number => {
    const result = Math.imul(rotl(Math.imul(b, 5) >>> 0, 7), 9) >>> 0;
    const t = (b << 9) >>> 0;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return result;
  };
  return {
    intn(n: number): number {
      if (!(Number.isSafeInteger(n) && n > 0 && n <= 2 ** 32)) {
        throw new RangeError(`intn: n must be in [1, 2^32], got ${n}`);
      }
      // Rejection sampling removes modulo bias.
      const limit = 2 ** 32 - (2 ** 32 % n);
      for (;;) {
        const x = next();
        if (x < limit) return x % n;
      }
    },
  };
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
