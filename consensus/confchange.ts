// Encoding of membership changes inside log entries. The format is small JSON so that a log dump
// stays readable; decoding validates every field, since entries arrive from other nodes.

import type { ConfChange, ConfChangeType } from './types.ts';

const TYPES: ReadonlySet<string> = new Set<ConfChangeType>([
  'addVoter',
  'addLearner',
  'removeNode',
]);
/** nodeIdBytesMax: longest node ID accepted (a libp2p Ed25519 peer ID is 52 characters). */
export const NODE_ID_BYTES_MAX = 128;
/** confChangeContextBytesMax: room for a member's addresses and nothing absurd. */
export const CONF_CHANGE_CONTEXT_BYTES_MAX = 4096;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function encodeConfChange(cc: ConfChange): Uint8Array {
  const obj: Record<string, string> = { type: cc.type, nodeId: cc.nodeId };
  if (cc.context !== undefined) obj.context = Buffer.from(cc.context).toString('base64');
  return encoder.encode(JSON.stringify(obj));
}

/** Returns the change, or an error string saying what is wrong with it. */
export function decodeConfChange(data: Uint8Array): ConfChange | string {
  let obj: unknown;
  try {
    obj = JSON.parse(decoder.decode(data));
  } catch {
    return 'conf change is not valid JSON';
  }
  if (typeof obj !== 'object' || obj === null) return 'conf change is not an object';
  const o = obj as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== 'type' && k !== 'nodeId' && k !== 'context')
      return `conf change has unknown field ${k}`;
  }
  if (typeof o.type !== 'string' || !TYPES.has(o.type))
    return `conf change type ${String(o.type)} is unknown`;
  const idError = validateNodeId(o.nodeId);
  if (idError !== undefined) return `conf change ${idError}`;
  const cc: { type: ConfChangeType; nodeId: string; context?: Uint8Array } = {
    type: o.type as ConfChangeType,
    nodeId: o.nodeId as string,
  };
  if (o.context !== undefined) {
    if (typeof o.context !== 'string') return 'conf change context is not a string';
    const ctx = new Uint8Array(Buffer.from(o.context, 'base64'));
    if (ctx.byteLength > CONF_CHANGE_CONTEXT_BYTES_MAX) return 'conf change context is too large';
    cc.context = ctx;
  }
  return cc;
}

export function validateNodeId(id: unknown): string | undefined {
  if (typeof id !== 'string') return 'node id is not a string';
  if (id.length === 0) return 'node id is empty';
  if (id.length > NODE_ID_BYTES_MAX) return `node id is longer than ${NODE_ID_BYTES_MAX}`;
  return undefined;
}
