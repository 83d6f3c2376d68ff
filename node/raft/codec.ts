// The wire form of Raft messages: one msgpack value per message, every field present. Used by
// every transport (libp2p streams, Maelstrom bodies, the simulator), so that what the simulator
// delivers went through the same encoding as what the network carries. decodeMessage never
// throws: bad bytes give a reason, and the transport drops and counts the frame.

import { Packr } from 'msgpackr';
import { type Entry, type Message, messageError } from '../../consensus/index.ts';

/**
 * Largest encoded message accepted on a Raft stream. Snapshots over libp2p travel on their own
 * stream in chunks, up to SNAPSHOT_MESSAGE_BYTES_MAX (node/p2p/snapshot_stream.ts).
 */
export const MESSAGE_BYTES_MAX = 64 * 1024 * 1024;

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

const TYPE_CODE = { normal: 0, confChange: 1 } as const;

export function encodeMessage(m: Message): Uint8Array {
  const entries = m.entries.map((e) => [e.term, e.index, TYPE_CODE[e.type], e.data]);
  const snap =
    m.snapshot === undefined
      ? null
      : [
          m.snapshot.metadata.index,
          m.snapshot.metadata.term,
          m.snapshot.metadata.confState.voters,
          m.snapshot.metadata.confState.learners,
          m.snapshot.data,
        ];
  return packr.pack([
    m.type,
    m.to,
    m.from,
    m.term,
    m.logTerm,
    m.index,
    entries,
    m.commit,
    snap,
    m.reject,
    m.rejectHint,
    m.context,
  ]);
}

function u8(x: unknown): Uint8Array {
  // msgpackr decodes binary as Buffer; hand the core plain views of the same bytes.
  return x instanceof Uint8Array
    ? new Uint8Array(x.buffer, x.byteOffset, x.byteLength)
    : (x as Uint8Array);
}

export function decodeMessage(
  bytes: Uint8Array,
  bytesMax = MESSAGE_BYTES_MAX,
): Message | { error: string } {
  if (bytes.byteLength > bytesMax) {
    return {
      error: `message of ${bytes.byteLength} bytes exceeds the limit of ${bytesMax} bytes`,
    };
  }
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (e) {
    return { error: `undecodable message: ${(e as Error).message}` };
  }
  if (!Array.isArray(raw) || raw.length !== 12) return { error: 'message is not a 12-field array' };
  const [
    type,
    to,
    from,
    term,
    logTerm,
    index,
    rawEntries,
    commit,
    snap,
    reject,
    rejectHint,
    context,
  ] = raw;
  if (!Array.isArray(rawEntries)) return { error: 'entries is not a list' };
  const entries: Entry[] = [];
  for (const r of rawEntries as unknown[]) {
    if (!Array.isArray(r) || r.length !== 4) return { error: 'entry is not a 4-field array' };
    const [eterm, eindex, etype, data] = r as [unknown, unknown, unknown, unknown];
    entries.push({
      term: eterm as number,
      index: eindex as number,
      type: etype === 0 ? 'normal' : etype === 1 ? 'confChange' : (String(etype) as Entry['type']),
      data: u8(data),
    });
  }
  let snapshot: Message['snapshot'];
  if (snap !== null) {
    if (!Array.isArray(snap) || snap.length !== 5)
      return { error: 'snapshot is not a 5-field array' };
    const [sindex, sterm, voters, learners, data] = snap as [
      unknown,
      unknown,
      unknown,
      unknown,
      unknown,
    ];
    if (!Array.isArray(voters) || !Array.isArray(learners))
      return { error: 'snapshot membership is not a list' };
    snapshot = {
      metadata: { index: sindex as number, term: sterm as number, confState: { voters, learners } },
      data: u8(data),
    };
  }
  const m = {
    type,
    to,
    from,
    term,
    logTerm,
    index,
    entries,
    commit,
    ...(snapshot !== undefined ? { snapshot } : {}),
    reject,
    rejectHint,
    context,
  } as Message;
  const problem = messageError(m);
  if (problem !== undefined) return { error: `${problem.reason}: ${problem.detail}` };
  return m;
}
