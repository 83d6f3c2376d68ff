// /pcr/api/1.0.0 (docs/protocols.md): one request frame, one answer frame, per stream.

import type { Libp2p, Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import type { Multiaddr } from '@multiformats/multiaddr';
import { Packr } from 'msgpackr';

export const API_PROTOCOL = '/pcr/api/1.0.0';
/** Largest request frame a member reads. */
export const API_REQUEST_BYTES_MAX = 1024 * 1024;
/** Largest answer frame a client reads. */
export const API_RESPONSE_BYTES_MAX = 64 * 1024 * 1024;
/** Requests one member serves at once on one connection (one stream each). */
export const API_STREAMS_PER_CONNECTION_MAX = 1024;

export type ApiErrorCode =
  | 'NO_LEADER'
  | 'TIMEOUT'
  | 'NOT_FOUND'
  | 'CAS_MISMATCH'
  | 'INVALID'
  | 'UNAVAILABLE'
  | 'NOT_LEADER'
  /** Data refused: it failed verification (hash, size, NAR grammar) or no trusted key signed it. */
  | 'CORRUPT';

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

/** The member's side of one exchange: read the request, answer it, close. */
export async function serveExchange(
  stream: Stream,
  handle: (req: unknown) => Promise<ApiResponse>,
): Promise<void> {
  const lp = lpStream(stream, { maxDataLength: API_REQUEST_BYTES_MAX });
  let req: unknown;
  try {
    req = packr.unpack((await lp.read()).subarray());
  } catch (e) {
    // Oversized, truncated or undecodable: say so if the stream still works, then close.
    await lp
      .write(packr.pack(apiError('INVALID', `bad request frame: ${(e as Error).message}`)))
      .catch(() => {});
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
  const lp = lpStream(stream, { maxDataLength: API_RESPONSE_BYTES_MAX });
  try {
    await lp.write(packr.pack(req), { signal });
    const resp = packr.unpack((await lp.read({ signal })).subarray()) as ApiResponse;
    await stream.close().catch(() => {});
    return resp;
  } catch (e) {
    stream.abort(e as Error);
    throw e;
  }
}
