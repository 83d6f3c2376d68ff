// /pcr/api/1.0.0 (docs/protocols.md): one request frame, one answer frame, per stream.

import type { Libp2p, Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import type { Multiaddr } from '@multiformats/multiaddr';
import { Packr } from 'msgpackr';
import type { ErrorCode } from '../errors.ts';
import { varintLength } from '../p2p/length_prefix.ts';

export const API_PROTOCOL = '/pcr/api/1.0.0';
/** Largest request frame a member reads. */
export const API_REQUEST_BYTES_MAX = 1024 * 1024;
/** Largest answer frame a client reads. */
export const API_RESPONSE_BYTES_MAX = 64 * 1024 * 1024;
/** Requests one member serves at once on one connection (one stream each). */
export const API_STREAMS_PER_CONNECTION_MAX = 1024;

/** The API's error codes: the one vocabulary of node/errors.ts (docs/errors.md). */
export type ApiErrorCode = ErrorCode;

export type ApiRequest = { readonly op: string } & Record<string, unknown>;
export type ApiResponse =
  | ({ readonly ok: true } & Record<string, unknown>)
  | {
      readonly ok: false;
      readonly error: { readonly code: ApiErrorCode; readonly message: string };
    };

export const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

export function apiError(code: ApiErrorCode, message: string): ApiResponse {
  return { ok: false, error: { code, message } };
}

/** The answer to a request frame above API_REQUEST_BYTES_MAX (checked before it is sent or read). */
export function requestTooLarge(bytes: number | string): ApiResponse {
  return apiError(
    'INVALID',
    `the request is ${bytes} bytes, longer than API_REQUEST_BYTES_MAX (${API_REQUEST_BYTES_MAX} bytes)`,
  );
}

/** Whether a read failed on a frame's length prefix (over the bound), before its payload. */
export function isFrameTooLarge(e: unknown): boolean {
  return (e as { name?: string }).name?.startsWith('InvalidDataLength') === true;
}

/** The declared size in an over-long frame's error ("... - N > M"), for the message. */
export function declaredSize(e: unknown): string {
  const m = /(\d+) > \d+/.exec((e as Error).message ?? '');
  return m?.[1] ?? `more than ${API_REQUEST_BYTES_MAX}`;
}

/** The member's side of one exchange: read the request, answer it, close. */
export async function serveExchange(
  stream: Stream,
  handle: (req: unknown) => Promise<ApiResponse>,
): Promise<void> {
  const lp = lpStream(stream, {
    maxDataLength: API_REQUEST_BYTES_MAX,
    lengthDecoder: varintLength,
  });
  let req: unknown;
  try {
    req = packr.unpack((await lp.read()).subarray());
  } catch (e) {
    // Oversized, truncated or undecodable: say so if the stream still works, then close.
    const answer = isFrameTooLarge(e)
      ? requestTooLarge(declaredSize(e))
      : apiError('INVALID', `bad request frame: ${(e as Error).message}`);
    await lp.write(packr.pack(answer)).catch(() => {});
    await stream.close().catch(() => stream.abort(e as Error));
    return;
  }
  const resp = await handle(req);
  await lp.write(packr.pack(resp));
  await stream.close();
}

/**
 * Dials a member and runs one exchange; rejects when no answer came within timeoutMs (dial and
 * exchange together). The one client path: `pcr` (ApiClient) and members (joins) both use it.
 */
export async function apiRequest(
  host: Libp2p,
  addr: Multiaddr | Multiaddr[],
  req: ApiRequest,
  timeoutMs: number,
): Promise<ApiResponse> {
  const signal = AbortSignal.timeout(timeoutMs);
  const stream = await host.dialProtocol(addr, API_PROTOCOL, {
    signal,
    maxOutboundStreams: API_STREAMS_PER_CONNECTION_MAX,
  });
  return requestExchange(stream, req, signal);
}

/** The client's side: send one request, read one answer. */
export async function requestExchange(
  stream: Stream,
  req: ApiRequest,
  signal?: AbortSignal,
): Promise<ApiResponse> {
  const lp = lpStream(stream, {
    maxDataLength: API_RESPONSE_BYTES_MAX,
    lengthDecoder: varintLength,
  });
  const frame = packr.pack(req);
  if (frame.length > API_REQUEST_BYTES_MAX) {
    await stream.close().catch(() => stream.abort(new Error('request too large')));
    return requestTooLarge(frame.length);
  }
  try {
    await lp.write(frame, { signal });
    const resp = packr.unpack((await lp.read({ signal })).subarray()) as ApiResponse;
    await stream.close().catch(() => {});
    return resp;
  } catch (e) {
    stream.abort(e as Error);
    throw e;
  }
}
