// Randomness for a real node: the consensus core draws election timeouts and request IDs from a
// RandomSource; a real process takes them from node:crypto (unpredictable, so that nodes started
// at the same instant do not time out in lockstep). The simulator passes its seeded source instead.

import { randomInt } from 'node:crypto';
import type { RandomSource } from '../consensus/index.ts';

/** node:crypto's randomInt accepts ranges up to 2^48; RandomSource asks for at most 2^32. */
export const cryptoRandom: RandomSource = {
  intn(n: number): number {
    if (!(Number.isSafeInteger(n) && n > 0 && n <= 2 ** 32)) {
      throw new RangeError(`intn: n must be in [1, 2^32], got ${n}`);
    }
    return randomInt(n);
  },
};
