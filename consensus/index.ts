// Public surface of the consensus core. See README.md for the caller's contract.

export { assert } from './assert.ts';
export { bootstrap } from './bootstrap.ts';
export {
  CONF_CHANGE_CONTEXT_BYTES_MAX,
  decodeConfChange,
  encodeConfChange,
  NODE_ID_BYTES_MAX,
} from './confchange.ts';
export { isRaftError, RaftError, type RaftErrorCode } from './errors.ts';
export type { ProgressState } from './progress.ts';
export {
  CAMPAIGN_TRANSFER,
  type Config,
  DEFAULTS,
  LEARNER_HEARTBEAT_EVERY_MAX,
  Raft,
  type RaftStats,
} from './raft.ts';
export { type RandomSource, seededRandom } from './rand.ts';
export { type ProgressStatus, RawNode, type Status } from './rawnode.ts';
export type { ReadOnlyOption } from './read_only.ts';
export { type InitialState, MemoryStorage, type Storage } from './storage.ts';
export * from './types.ts';
export {
  CONTEXT_BYTES_MAX,
  DROP_REASONS,
  type DropReason,
  ENTRIES_PER_MESSAGE_MAX,
  messageError,
} from './validate.ts';
