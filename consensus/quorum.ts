// Majority quorums as pure functions (etcd's quorum/ package, without joint configurations: the
// product changes membership one voter at a time, see README.md).

import type { NodeId } from './types.ts';

export type VoteResult = 'pending' | 'lost' | 'won';

/**
 * The highest index that a majority of voters have acknowledged, given each voter's match index.
 * An empty voter set commits everything (so a node with no config never blocks), as in etcd.
 */
export function committedIndex(
  voters: ReadonlySet<NodeId>,
  matchOf: (id: NodeId) => number,
): number {
  const n = voters.size;
  if (n === 0) return Number.MAX_SAFE_INTEGER;
  const srt: number[] = [];
  for (const id of voters) srt.push(matchOf(id));
  srt.sort((a, b) => b - a);
  // Sorted descending, the (n/2)-th element (0-based, floor) is matched by a majority.
  return srt[Math.floor(n / 2)]!;
}

/** The outcome of an election given the votes received so far (undefined = not yet answered). */
export function voteResult(
  voters: ReadonlySet<NodeId>,
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  if (voters.size === 0) return 'won';
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  const q = Math.floor(voters.size / 2) + 1;
  if (granted >= q) return 'won';
  if (granted + missing >= q) return 'pending';
  return 'lost';
}

export function quorumSize(voters: ReadonlySet<NodeId>): number {
  return Math.floor(voters.size / 2) + 1;
}
