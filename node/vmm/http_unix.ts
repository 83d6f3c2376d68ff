// A small HTTP/1.1 client over a unix socket, for the cloud-hypervisor and firecracker APIs: JSON
// in, JSON out, one request per connection, a timeout over the whole exchange, a bounded body.

import { request } from 'node:http';
import { VmmError } from './backend.ts';

export const API_TIMEOUT_MS = 10_000;
/** A reply body above this is a broken peer (vm.info, the largest, is a few KiB). */
export const API_BODY_BYTES_MAX = 1024 * 1024;

export interface ApiReply {
  readonly status: number;
  readonly body: unknown;
}

export function apiRequest(
  socketPath: string,
  method: 'GET' | 'PUT' | 'PATCH',
  path: string,
  body?: unknown,
  timeoutMs = API_TIMEOUT_MS,
): Promise<ApiReply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(
      {
        socketPath,
        method,
        path,
        host: 'localhost',
        headers: {
          Accept: 'application/json',
          ...(payload
            ? { 'Content-Type': 'application/json', 'Content-Length': payload.length }
            : {}),
        },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > API_BODY_BYTES_MAX) {
            req.destroy(
              new VmmError(
                'VMM_API_ERROR',
                `${method} ${path}: reply above ${API_BODY_BYTES_MAX} bytes (API_BODY_BYTES_MAX)`,
              ),
            );
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('timeout', () =>
      req.destroy(
        new VmmError('VMM_API_ERROR', `${method} ${path}: no reply within ${timeoutMs} ms`),
      ),
    );
    req.on('error', (e) =>
      reject(
        e instanceof VmmError
          ? e
          : new VmmError('VMM_API_ERROR', `${method} ${path} on ${socketPath}: ${e.message}`),
      ),
    );
    req.end(payload);
  });
}

/** Like apiRequest, but a non-2xx status is a VmmError carrying the API's own message. */
export async function apiCall(
  socketPath: string,
  method: 'GET' | 'PUT' | 'PATCH',
  path: string,
  body?: unknown,
): Promise<unknown> {
  const r = await apiRequest(socketPath, method, path, body);
  if (r.status < 200 || r.status > 299) {
    const b = r.body as { fault_message?: string } | string | undefined;
    const msg = typeof b === 'string' ? b : (b?.fault_message ?? JSON.stringify(b));
    throw new VmmError('VMM_API_ERROR', `${method} ${path}: HTTP ${r.status}: ${msg}`);
  }
  return r.body;
}

/** Waits until the API socket answers `path` (the VMM creates it shortly after it starts). */
export async function waitForApi(
  socketPath: string,
  path: string,
  alive: () => boolean,
  timeoutMs: number,
): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!alive())
      throw new VmmError('VMM_LAUNCH_FAILED', 'the VMM exited during launch (see the console log)');
    try {
      return await apiCall(socketPath, 'GET', path);
    } catch (e) {
      if (Date.now() > deadline) {
        throw new VmmError(
          'VMM_LAUNCH_FAILED',
          `the API on ${socketPath} did not answer within ${timeoutMs} ms: ${(e as Error).message}`,
        );
      }
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}
