// The harness has teeth: with a safety rule of Raft broken on purpose (consensus/planted.ts), a
// short sweep of the simulator finds it, and the linearizability checker calls the history
// invalid; with the rule intact the same seeds find nothing.
//
// The planted bug is 'voteWithoutLogCheck' (votes granted without the §5.4.1 up-to-date check):
// a node that missed committed entries can be elected and overwrite them. The workload is tuned
// to notice: many distinct values (a lost write cannot hide behind an equal one), half reads,
// frequent partitions and crashes.

import { afterEach, describe, expect, it } from 'vitest';
import { plantBug } from '../consensus/planted.ts';
import { PLANTED_EARLY_SEND } from '../node/raft/node.ts';
import { type RunOptions, runSimulation } from './run.ts';

/** The sweep gives up after this many seeds. */
const SEEDS_MAX = 50;

const options = (seed: number): RunOptions => ({
  seed,
  timeMs: 5000,
  nemesis: ['partition', 'crash'],
  generate: { faultMinMs: 100, faultMaxMs: 800, gapMinMs: 50, gapMaxMs: 300 },
  workload: { values: 1000, mix: { read: 0.5, write: 0.5, cas: 0 } },
});

let undo: (() => void) | undefined;
afterEach(() => {
  undo?.();
  undo = undefined;
});

describe('teeth', () => {
  it('with voteWithoutLogCheck planted, a sweep finds a linearizability violation; without, the same seeds are clean', () => {
    undo = plantBug('voteWithoutLogCheck');
    let firstSafety: number | undefined;
    let firstInvalid: number | undefined;
    let explanation = '';
    for (let seed = 1; seed <= SEEDS_MAX && firstInvalid === undefined; seed++) {
      const r = runSimulation(options(seed));
      if (r.violationCount > 0) firstSafety ??= seed;
      if (r.check.verdict === 'invalid') {
        firstInvalid = seed;
        explanation = r.check.message ?? '';
      }
    }
    undo();
    undo = undefined;
    console.log(
      `teeth: voteWithoutLogCheck found by the checker (invalid history) at seed ${firstInvalid} ` +
        `(${firstInvalid} seeds), a cross-node safety violation first at seed ${firstSafety}`,
    );
    expect(firstInvalid).toBeDefined();
    expect(firstSafety).toBeDefined();
    expect(explanation).toMatch(/Not linearizable/);

    for (let seed = 1; seed <= firstInvalid!; seed++) {
      const r = runSimulation(options(seed));
      expect({
        seed,
        verdict: r.check.verdict,
        violations: r.violations,
        live: r.liveness.ok,
      }).toEqual({
        seed,
        verdict: 'valid',
        violations: [],
        live: true,
      });
    }
  });

  it('with every message sent before its write (acknowledgements too), the durability check finds an entry applied without a quorum on disk; without, the same seeds are clean (D34)', () => {
    const plain = (seed: number): RunOptions => ({ seed, timeMs: 3000, nemesis: ['crash'] });
    PLANTED_EARLY_SEND.all = true;
    undo = () => {
      PLANTED_EARLY_SEND.all = false;
    };
    let found: number | undefined;
    let message = '';
    for (let seed = 1; seed <= SEEDS_MAX && found === undefined; seed++) {
      const hit = runSimulation(plain(seed)).violations.find((v) => v.kind === 'not-durable');
      if (hit !== undefined) {
        found = seed;
        message = hit.message;
      }
    }
    undo();
    undo = undefined;
    console.log(`teeth: early acknowledgements found by the durability check at seed ${found}`);
    expect(found).toBeDefined();
    expect(message).toMatch(/was applied while a quorum of .* did not hold it on disk/);
    for (let seed = 1; seed <= found!; seed++) {
      const r = runSimulation(plain(seed));
      expect({ seed, violations: r.violations }).toEqual({ seed, violations: [] });
    }
  });
});
