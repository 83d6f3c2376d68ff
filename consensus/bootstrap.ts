// Starting a new group. The initial membership is written into the log as committed conf-change
// entries (indexes 1..n, term 1), as etcd's RawNode.Bootstrap does, so that a node joining later
// learns the whole membership by replaying the log from index 1, with or without a snapshot.
//
// The alternative, a ConfState given to `new MemoryStorage(confState)` (membership "at index 0"),
// suits groups whose members all start together with that same state and never change it (most
// tests). Such a membership is in no entry, so a member added later can only learn it from a
// snapshot: the leader sends such a node nothing until it has a snapshot to send (see
// Raft.maybeSendAppend).

import { assert } from './assert.ts';
import { encodeConfChange } from './confchange.ts';
import type { MemoryStorage } from './storage.ts';
import { type Entry, NONE, type NodeId } from './types.ts';

/**
 * Writes the initial membership into an empty storage. The first Ready hands the entries out as
 * committed: the caller applies them (applyConfChangeEntry) like any other conf change, and only
 * then may the node campaign.
 */
export function bootstrap(storage: MemoryStorage, voters: readonly NodeId[]): void {
  assert(voters.length > 0, 'bootstrap needs at least one voter');
  assert(new Set(voters).size === voters.length, 'bootstrap voters must be distinct');
  assert(storage.lastIndex() === 0, 'bootstrap needs an empty log');
  const { hardState, confState } = storage.initialState();
  assert(hardState.term === 0 && hardState.commit === 0, 'bootstrap needs a fresh hard state');
  assert(
    confState.voters.length === 0 && confState.learners.length === 0,
    'bootstrap needs no membership',
  );
  const entries: Entry[] = voters.map((nodeId, i) => ({
    term: 1,
    index: i + 1,
    type: 'confChange',
    data: encodeConfChange({ type: 'addVoter', nodeId }),
  }));
  storage.append(entries);
  storage.setHardState({ term: 1, vote: NONE, commit: entries.length });
}
