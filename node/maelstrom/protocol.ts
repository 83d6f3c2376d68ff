// Maelstrom's node protocol (https://github.com/jepsen-io/maelstrom/blob/main/doc/protocol.md):
// one JSON message per line, `{src, dest, body}`, where body has a `type` and, for requests, a
// `msg_id` that the reply echoes as `in_reply_to`. This module owns the message shapes, their
// validation and the error codes; what a node does with them is node.ts.

/** Maelstrom's error codes (doc/protocol.md#errors). */
export const ERROR = {
  /** Indeterminate: the request may or may not have taken effect. */
  timeout: 0,
  /** Definite: this node does not serve requests of this type. */
  notSupported: 10,
  /** Definite: the request was not performed; retrying may work. */
  temporarilyUnavailable: 11,
  /** Definite: the request is malformed (missing or badly typed fields). */
  malformedRequest: 12,
  /** Indeterminate: the node hit an internal error while handling the request. */
  crash: 13,
  /** Definite: the operation was aborted. */
  abort: 14,
  /** Definite: the key does not exist. */
  keyDoesNotExist: 20,
  /** Definite: a compare-and-set's expected value differs from the current one. */
  preconditionFailed: 22,
} as const;

export type ErrorCode = (typeof ERROR)[keyof typeof ERROR];

/** Longest input line a node accepts (a Raft frame is at most 64 MiB, base64 adds a third). */
export const LINE_CHARS_MAX = 96 * 1024 * 1024;

export interface Body {
  readonly type: string;
  readonly msg_id?: number;
  readonly in_reply_to?: number;
  readonly [field: string]: unknown;
}

export interface Envelope {
  readonly src: string;
  readonly dest: string;
  readonly body: Body;
}

export interface ErrorBody extends Body {
  readonly type: 'error';
  readonly code: number;
  readonly text: string;
}

export type Parsed =
  | { readonly ok: true; readonly message: Envelope }
  | {
      readonly ok: false;
      readonly problem: string;
      /** Whom to answer with error 12, when the line said enough to know (src and msg_id). */
      readonly replyTo?: { readonly src: string; readonly msgId: number };
    };

function isMsgId(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Parses and checks one line. Never throws. */
export function parseLine(line: string): Parsed {
  if (line.length > LINE_CHARS_MAX) {
    return { ok: false, problem: `line of ${line.length} characters exceeds LINE_CHARS_MAX` };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (e) {
    return { ok: false, problem: `not JSON: ${(e as Error).message}` };
  }
  if (!isRecord(raw)) return { ok: false, problem: 'a message must be a JSON object' };
  const body = raw.body;
  const src = typeof raw.src === 'string' && raw.src.length > 0 ? raw.src : undefined;
  const msgId = isRecord(body) && isMsgId(body.msg_id) ? body.msg_id : undefined;
  const bad = (problem: string): Parsed =>
    src !== undefined && msgId !== undefined
      ? { ok: false, problem, replyTo: { src, msgId } }
      : { ok: false, problem };
  if (src === undefined) return bad('src must be a non-empty string');
  if (typeof raw.dest !== 'string' || raw.dest.length === 0) {
    return bad('dest must be a non-empty string');
  }
  if (!isRecord(body)) return bad('body must be an object');
  if (typeof body.type !== 'string' || body.type.length === 0) {
    return bad('body.type must be a non-empty string');
  }
  if (body.msg_id !== undefined && !isMsgId(body.msg_id))
    return bad('body.msg_id must be an integer');
  if (body.in_reply_to !== undefined && !isMsgId(body.in_reply_to)) {
    return bad('body.in_reply_to must be an integer');
  }
  return { ok: true, message: { src, dest: raw.dest, body: body as Body } };
}

export function errorBody(code: ErrorCode, text: string): ErrorBody {
  return { type: 'error', code, text };
}
