import { describe, expect, it } from 'vitest';
import { quorumProblem } from './quorum.ts';

describe('quorumProblem', () => {
  const voters = ['a', 'b', 'c'];

  it('names the unreachable voters when fewer than a majority are reachable', () => {
    expect(quorumProblem('a', voters, () => false)).toBe(
      'no quorum: 2 of 3 voters unreachable (b, c)',
    );
    // A learner does not count itself.
    expect(quorumProblem('l', voters, (id) => id === 'a')).toBe(
      'no quorum: 2 of 3 voters unreachable (b, c)',
    );
  });

  it('says nothing when a majority is reachable (an election is the likelier cause)', () => {
    expect(quorumProblem('a', voters, (id) => id === 'b')).toBeUndefined();
    expect(quorumProblem('a', [], () => false)).toBeUndefined();
  });

  it('at the edge: 2 of 4 reachable is not a majority, 3 of 5 is', () => {
    expect(quorumProblem('a', ['a', 'b', 'c', 'd'], (id) => id === 'b')).toBe(
      'no quorum: 2 of 4 voters unreachable (c, d)',
    );
    expect(
      quorumProblem('a', ['a', 'b', 'c', 'd', 'e'], (id) => id === 'b' || id === 'c'),
    ).toBeUndefined();
  });
});
