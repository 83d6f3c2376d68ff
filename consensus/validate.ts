// Structural validation of messages that arrive from the network. Anything that fails is dropped
// and counted under a DropReason by the core; nothing here throws. Semantic checks that need the
// node's state (stale term, unknown sender, indexes beyond the log) live in raft.ts.

import { NODE_ID_BYTES_MAX } from './confchange.ts';
import { type Entry, LOCAL_MESSAGE_TYPES, type Message, WIRE_MESSAGE_TYPES } from './types.ts';

export type DropReason =
  | 'malformed' // a field has the wrong type or an impossible value
  | 'localTypeFromWire' // a local-only message type arrived from the network
  | 'wrongRecipient' // `to` is not this node
  | 'unknownSender' // `from` is not a member of this node's configuration
  | 'staleTerm' // the message belongs to an older term
  | 'outOfRange' // an index beyond this node's log, or beyond what was ever sent
  | 'conflictingLeader' // a second leader claimed the same term
  | 'inLease' // a vote request while a live leader is known (check-quorum)
  | 'proposalDropped' // a forwarded proposal or read that could not be taken
  | 'unexpected'; // a type this node's role does not handle now

export const DROP_REASONS: readonly DropReason[] = [
  'malformed',
  'localTypeFromWire',
  'wrongRecipient',
  'unknownSender',
  'staleTerm',
  'outOfRange',
  'conflictingLeader',
  'inLease',
  'proposalDropped',
  'unexpected',
];

/** entriesPerMessageMax: more entries than this in one message is not something we ever send. */
export const ENTRIES_PER_MESSAGE_MAX = 1 << 20;
/** contextBytesMax: read request contexts and campaign markers are short identifiers. */
export const CONTEXT_BYTES_MAX = 256;

const ENTRY_TYPES: ReadonlySet<string> = new Set(['normal', 'confChange']);

function isIndex(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function entryError(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null) return 'entry is not an object';
  const x = e as Entry;
  if (!isIndex(x.term) || !isIndex(x.index))
    return 'entry term/index is not a non-negative integer';
  if (!ENTRY_TYPES.has(x.type)) return `entry type ${String(x.type)} is unknown`;
  if (!(x.data instanceof Uint8Array)) return 'entry data is not bytes';
  return undefined;
}

/** Returns undefined for a well-formed wire message, else what is wrong with it. */
export function messageError(m: unknown): { reason: DropReason; detail: string } | undefined {
  if (typeof m !== 'object' || m === null) return { reason: 'malformed', detail: 'not an object' };
  const x = m as Message;
  if (typeof x.type !== 'string') return { reason: 'malformed', detail: 'type is not a string' };
  if (LOCAL_MESSAGE_TYPES.has(x.type)) return { reason: 'localTypeFromWire', detail: x.type };
  if (!WIRE_MESSAGE_TYPES.has(x.type))
    return { reason: 'malformed', detail: `unknown type ${x.type}` };
  if (typeof x.from !== 'string' || x.from.length === 0 || x.from.length > NODE_ID_BYTES_MAX) {
    return { reason: 'malformed', detail: 'from is not a node id' };
  }
  if (typeof x.to !== 'string') return { reason: 'malformed', detail: 'to is not a node id' };
  for (const f of ['term', 'logTerm', 'index', 'commit', 'rejectHint'] as const) {
    if (!isIndex(x[f]))
      return { reason: 'malformed', detail: `${f} is not a non-negative integer` };
  }
  if (typeof x.reject !== 'boolean')
    return { reason: 'malformed', detail: 'reject is not a boolean' };
  if (typeof x.context !== 'string' || x.context.length > CONTEXT_BYTES_MAX) {
    return { reason: 'malformed', detail: 'context is not a short string' };
  }
  if (!Array.isArray(x.entries) || x.entries.length > ENTRIES_PER_MESSAGE_MAX) {
    return { reason: 'malformed', detail: 'entries is not a bounded array' };
  }
  for (const e of x.entries) {
    const err = entryError(e);
    if (err !== undefined) return { reason: 'malformed', detail: err };
  }
  switch (x.type) {
    case 'MsgApp': {
      // Entries follow (index, logTerm) contiguously, with terms that never go down.
      let prevTerm = x.logTerm;
      for (let i = 0; i < x.entries.length; i++) {
        const e = x.entries[i]!;
        if (e.index !== x.index + 1 + i)
          return { reason: 'malformed', detail: 'entries are not contiguous' };
        if (e.term < prevTerm) return { reason: 'malformed', detail: 'entry terms go down' };
        if (e.term > x.term)
          return { reason: 'malformed', detail: 'entry term beyond message term' };
        prevTerm = e.term;
      }
      if (x.logTerm > x.term) return { reason: 'malformed', detail: 'logTerm beyond message term' };
      break;
    }
    case 'MsgProp':
      if (x.entries.length === 0)
        return { reason: 'malformed', detail: 'proposal without entries' };
      break;
    case 'MsgSnap': {
      const s = x.snapshot;
      if (typeof s !== 'object' || s === null)
        return { reason: 'malformed', detail: 'MsgSnap without snapshot' };
      const md = s.metadata;
      if (typeof md !== 'object' || md === null || !isIndex(md.index) || !isIndex(md.term)) {
        return { reason: 'malformed', detail: 'snapshot metadata' };
      }
      if (md.index === 0) return { reason: 'malformed', detail: 'empty snapshot' };
      if (md.term > x.term)
        return { reason: 'malformed', detail: 'snapshot term beyond message term' };
      const cs = md.confState;
      if (
        typeof cs !== 'object' ||
        cs === null ||
        !Array.isArray(cs.voters) ||
        !Array.isArray(cs.learners)
      ) {
        return { reason: 'malformed', detail: 'snapshot conf state' };
      }
      for (const id of [...cs.voters, ...cs.learners]) {
        if (typeof id !== 'string' || id.length === 0 || id.length > NODE_ID_BYTES_MAX) {
          return { reason: 'malformed', detail: 'snapshot conf state member' };
        }
      }
      if (!(s.data instanceof Uint8Array))
        return { reason: 'malformed', detail: 'snapshot data is not bytes' };
      break;
    }
    case 'MsgVote':
    case 'MsgPreVote':
      if (x.term === 0) return { reason: 'malformed', detail: 'vote request without term' };
      break;
    default:
      break;
  }
  return undefined;
}
