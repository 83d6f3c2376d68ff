// Why there is no leader, when the answer is "a quorum of voters is unreachable": a request that
// fails with NO_LEADER says which voters this member cannot reach instead of "retry shortly".
// Pure: the caller says which voters it reaches (on a follower, the members it holds a connection
// to).

import type { NodeId } from '../../consensus/index.ts';

/**
 * "no quorum: 2 of 3 voters unreachable (b, c)" when the voters this member reaches (itself
 * included if it is one) are fewer than a majority; undefined when a majority is reachable (an
 * election is then the likely cause).
 */
export function quorumProblem(
  self: NodeId,
  voters: readonly NodeId[],
  reachable: (id: NodeId) => boolean,
): string | undefined {
  if (voters.length === 0) return undefined;
  const down = voters.filter((v) => v !== self && !reachable(v)).sort();
  const majority = Math.floor(voters.length / 2) + 1;
  if (voters.length - down.length >= majority) return undefined;
  return `no quorum: ${down.length} of ${voters.length} voters unreachable (${down.join(', ')})`;
}
