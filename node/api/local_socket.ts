// The local API channel: a unix socket in the data dir (api.sock) that serves the same requests as
// /pcr/api-session/1.0.0 to processes on the same machine, so that `pcr` against the local node
// loads no libp2p (a dial costs a key generation, a PSK handshake, noise and yamux: most of a
// command's time). Access is guarded by file permissions: the socket is 0600 inside the 0700 data
// dir, which also holds the cluster secret, so whoever may open it could join the cluster anyway.
// Remote members stay on the authenticated libp2p path.
//
// Framing: one JSON object per line, pipelined. The client writes {"id":n,"req":{...}}; the member
// answers {"id":n,"resp":{...}} in whatever order answers complete. JSON rather than msgpack: the
// answers are plain data, and a client needs no codec loaded (`socat - UNIX:api.sock` works too).
// This module imports no libp2p, only types from wire.ts.

import { chmod, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { ApiRequest, ApiResponse } from './wire.ts';

export const LOCAL_SOCKET_FILE = 'api.sock';
/** Longest request line a member reads; a longer one ends the connection. */
export const LOCAL_REQUEST_BYTES_MAX = 1024 * 1024;
/** Longest answer line a client reads. */
export const LOCAL_RESPONSE_BYTES_MAX = 64 * 1024 * 1024;
/** Requests one connection has in flight at once; the member stops reading beyond it. */
export const LOCAL_INFLIGHT_MAX = 1024;
/** Connections the member serves at once on its socket. */
export const LOCAL_CONNECTIONS_MAX = 256;

/** Splits a byte stream into lines, refusing any longer than maxBytes. */
class LineReader {
  private parts: Buffer[] = [];
  private bytes = 0;
  private readonly maxBytes: number;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  /** The complete lines in `chunk` (with what came before); throws when a line is too long. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      this.parts.push(chunk.subarray(start, nl));
      lines.push(Buffer.concat(this.parts).toString('utf8'));
      this.parts = [];
      this.bytes = 0;
      start = nl + 1;
    }
    if (start < chunk.length) {
      this.parts.push(chunk.subarray(start));
      this.bytes += chunk.length - start;
    }
    if (this.bytes > this.maxBytes) throw new Error(`a line is longer than ${this.maxBytes} bytes`);
    return lines;
  }
}

function frameError(message: string): ApiResponse {
  return { ok: false, error: { code: 'INVALID', message } };
}

/** The member's side of one connection: answers every request line until the client closes. */
function serveConnection(socket: Socket, handle: (req: unknown) => Promise<ApiResponse>): void {
  const reader = new LineReader(LOCAL_REQUEST_BYTES_MAX);
  let inflight = 0;
  const send = (id: number, resp: ApiResponse): void => {
    if (!socket.destroyed) socket.write(`${JSON.stringify({ id, resp })}\n`);
  };
  socket.on('data', (chunk: Buffer) => {
    let lines: string[];
    try {
      lines = reader.push(chunk);
    } catch (e) {
      send(0, frameError((e as Error).message));
      socket.end();
      return;
    }
    for (const line of lines) {
      let frame: { id?: unknown; req?: unknown };
      try {
        frame = JSON.parse(line) as typeof frame;
      } catch {
        frame = {};
      }
      const id = frame.id;
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) {
        // Frame id 0 is never a request's: it says why the connection ends.
        send(0, frameError('a request line is {"id":n,"req":{...}} with n > 0'));
        socket.end();
        return;
      }
      inflight++;
      if (inflight >= LOCAL_INFLIGHT_MAX) socket.pause();
      handle(frame.req)
        .catch((e: Error) => frameError(`request failed: ${e.message}`))
        .then((resp) => {
          send(id, resp);
          inflight--;
          if (inflight < LOCAL_INFLIGHT_MAX) socket.resume();
        });
    }
  });
  socket.on('error', () => socket.destroy());
}

export interface LocalSocketServer {
  readonly path: string;
  /** Stops serving, drops open connections (a `vm logs --follow`), removes the socket file. */
  close(): Promise<void>;
}

/**
 * Serves the API on a unix socket at `path` (a leftover socket file is replaced: the caller holds
 * the data dir's lock, so no other member uses it). Resolves once the socket is listening, 0600.
 */
export async function serveLocalSocket(
  path: string,
  handle: (req: unknown) => Promise<ApiResponse>,
): Promise<LocalSocketServer> {
  await rm(path, { force: true });
  const open = new Set<Socket>();
  const server: Server = createServer((socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    serveConnection(socket, handle);
  });
  server.maxConnections = LOCAL_CONNECTIONS_MAX;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await chmod(path, 0o600);
  return {
    path,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of open) socket.destroy();
      await closed;
      await rm(path, { force: true });
    },
  };
}

interface Pending {
  readonly resolve: (r: ApiResponse) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** The client's side: requests are pipelined on one connection and answered by id. */
export class LocalApiClient {
  private readonly socket: Socket;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failed: Error | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    const reader = new LineReader(LOCAL_RESPONSE_BYTES_MAX);
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const line of reader.push(chunk)) this.deliver(line);
      } catch (e) {
        this.fail(e as Error);
      }
    });
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('the node closed the local socket')));
  }

  /** Connects to the socket; rejects with the socket error (ENOENT, ECONNREFUSED, EACCES). */
  static connect(path: string): Promise<LocalApiClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new LocalApiClient(socket));
      });
    });
  }

  request(req: ApiRequest, timeoutMs: number): Promise<ApiResponse> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.socket.write(`${JSON.stringify({ id, req })}\n`);
    });
  }

  close(): Promise<void> {
    this.fail(new Error('closed'));
    this.socket.destroy();
    return Promise.resolve();
  }

  private deliver(line: string): void {
    const frame = JSON.parse(line) as { id?: unknown; resp?: ApiResponse };
    if (frame.id === 0 && frame.resp !== undefined && !frame.resp.ok) {
      throw new Error(`the node refused the connection: ${frame.resp.error.message}`);
    }
    const p = typeof frame.id === 'number' ? this.pending.get(frame.id) : undefined;
    if (p === undefined || frame.resp === undefined) return; // timed out already
    this.pending.delete(frame.id as number);
    clearTimeout(p.timer);
    p.resolve(frame.resp);
  }

  private fail(e: Error): void {
    if (this.failed !== undefined) return;
    this.failed = e;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.pending.clear();
  }
}
