// Maelstrom's lin-kv workload on the cluster's key-value state machine: how a request body becomes
// a command or query of node/state/machine.ts, and how the node's outcome becomes a reply body.
//
// Keys and values are arbitrary JSON in Maelstrom (integers in practice); the state machine stores
// strings, so both are stored as canonical JSON (object keys sorted), which makes a cas compare
// values structurally, as Maelstrom's own lin-kv service does with Clojure's `=`.
//
// Semantics (Maelstrom's lin-kv, doc/workloads.md and its lin-kv service):
//   read {key}               -> read_ok {value}, or error 20 if the key does not exist
//   write {key, value}       -> write_ok
//   cas {key, from, to}      -> cas_ok if the value is `from`; error 22 if it differs; 20 if absent
//   cas ... create_if_not_exists: true -> an absent key is created with `to` (whatever `from` is)

import { ERRORS, outcomeError } from '../errors.ts';
import type { Outcome } from '../raft/node.ts';
import { canonicalJson } from '../state/canonical_json.ts';
import type { Command, Query } from '../state/machine.ts';
import { type Body, errorBody } from './protocol.ts';

export type LinKvRequest =
  | { readonly f: 'read'; readonly key: string }
  | { readonly f: 'write'; readonly key: string; readonly value: string }
  | {
      readonly f: 'cas';
      readonly key: string;
      readonly from: string;
      readonly to: string;
      readonly createIfNotExists: boolean;
    };

export const LIN_KV_TYPES: ReadonlySet<string> = new Set(['read', 'write', 'cas']);

/** The request in a lin-kv body, or why it is malformed (error 12). */
export function parseLinKv(body: Body): LinKvRequest | { readonly problem: string } {
  if (!('key' in body) || body.key === undefined) return { problem: `${body.type} needs a key` };
  const key = canonicalJson(body.key);
  switch (body.type) {
    case 'read':
      return { f: 'read', key };
    case 'write':
      if (!('value' in body) || body.value === undefined) return { problem: 'write needs a value' };
      return { f: 'write', key, value: canonicalJson(body.value) };
    case 'cas': {
      if (!('from' in body) || body.from === undefined) return { problem: 'cas needs from' };
      if (!('to' in body) || body.to === undefined) return { problem: 'cas needs to' };
      const create = body.create_if_not_exists;
      if (create !== undefined && typeof create !== 'boolean') {
        return { problem: 'create_if_not_exists must be a boolean' };
      }
      return {
        f: 'cas',
        key,
        from: canonicalJson(body.from),
        to: canonicalJson(body.to),
        createIfNotExists: create === true,
      };
    }
    default:
      return { problem: `${body.type} is not a lin-kv request` };
  }
}

export function readQuery(r: { key: string }): Query {
  return { op: 'kv.get', key: r.key };
}

export function writeCommand(r: { key: string; value: string }): Command {
  return { op: 'kv.put', key: r.key, value: r.value };
}

/** `from: null` is the state machine's "only if absent" (the creating half of create_if_not_exists). */
export function casCommand(r: { key: string; to: string }, from: string | null): Command {
  return { op: 'kv.cas', key: r.key, from, to: r.to };
}

/** The reply body for the node's outcome of a lin-kv request. */
export function replyBody(f: LinKvRequest['f'], o: Outcome): Body {
  // One vocabulary (node/errors.ts): each code carries its Maelstrom code. A `duplicate` never
  // reaches a waiting client (the first application answered it); if it did, the request took
  // effect once, so it maps to 0 (unknown) rather than a guess.
  const e = outcomeError(o);
  if (e !== undefined) {
    const text = !o.ok && e.code !== 'INVALID' ? `${e.code}: ${e.message}` : e.message;
    return errorBody(ERRORS[e.code].maelstrom, text);
  }
  if (!o.ok || !o.result.ok) throw new Error('unreachable: outcomeError covers every failure');
  const r = o.result;
  switch (f) {
    case 'read':
      return { type: 'read_ok', value: decodeValue(r.value) };
    case 'write':
      return { type: 'write_ok' };
    case 'cas':
      return { type: 'cas_ok' };
  }
}

/** Values are stored as JSON by this adapter; anything else (written by another client) as is. */
function decodeValue(stored: string | null | undefined): unknown {
  if (stored === null || stored === undefined) return null;
  try {
    return JSON.parse(stored);
  } catch {
    return stored;
  }
}
