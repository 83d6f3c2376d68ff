// The local API channel on a real unix socket: pipelined answers by id, permissions, bounds.

import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  LOCAL_REQUEST_BYTES_MAX,
  LocalApiClient,
  type LocalSocketServer,
  serveLocalSocket,
} from './local_socket.ts';
import type { ApiResponse } from './wire.ts';

let dir: string;
let server: LocalSocketServer | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pcr-sock-'));
});
afterEach(async () => {
  await server?.close();
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** Answers `{echo}` after `delayMs` (a request that says so), so answers can overtake each other. */
async function echo(req: unknown): Promise<ApiResponse> {
  const r = req as { op: string; delayMs?: number };
  if (r.delayMs !== undefined) await new Promise((res) => setTimeout(res, r.delayMs));
  return { ok: true, echo: r.op };
}

/** Sends raw bytes on a fresh connection; resolves with everything the member wrote back. */
function raw(path: string, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let got = '';
    s.on('data', (d) => {
      got += d.toString();
    });
    s.on('error', reject);
    s.on('close', () => resolve(got));
    s.on('connect', () => s.write(bytes));
  });
}

describe('local API socket', () => {
  it('answers pipelined requests by id, whatever order they complete in', async () => {
    server = await serveLocalSocket(join(dir, 'api.sock'), echo);
    const c = await LocalApiClient.connect(server.path);
    const slow = c.request({ op: 'slow', delayMs: 50 }, 5000);
    const fast = c.request({ op: 'fast' }, 5000);
    expect(await fast).toEqual({ ok: true, echo: 'fast' });
    expect(await slow).toEqual({ ok: true, echo: 'slow' });
    await c.close();
  });

  it('is a socket only its owner may open (0600)', async () => {
    server = await serveLocalSocket(join(dir, 'api.sock'), echo);
    const st = await stat(server.path);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
  });

  it('replaces a leftover socket file, and removes it on close', async () => {
    const path = join(dir, 'api.sock');
    const first = await serveLocalSocket(path, echo);
    // A daemon killed with -9 leaves the file; the next one must still start.
    server = await serveLocalSocket(path, echo);
    await first.close().catch(() => {});
    server = await serveLocalSocket(path, echo);
    await server.close();
    server = undefined;
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('ends a connection on a malformed line, saying why under id 0', async () => {
    server = await serveLocalSocket(join(dir, 'api.sock'), echo);
    const got = await raw(server.path, 'not json\n');
    expect(JSON.parse(got.trim())).toMatchObject({ id: 0, resp: { ok: false } });
  });

  it(`refuses a request line longer than LOCAL_REQUEST_BYTES_MAX (${LOCAL_REQUEST_BYTES_MAX} bytes)`, async () => {
    server = await serveLocalSocket(join(dir, 'api.sock'), echo);
    const atBound = `{"id":1,"req":{"op":"${'x'.repeat(LOCAL_REQUEST_BYTES_MAX - 30)}"}}`;
    expect(atBound.length).toBeLessThanOrEqual(LOCAL_REQUEST_BYTES_MAX);
    const c = await LocalApiClient.connect(server.path);
    const ok = await c.request({ op: 'x'.repeat(LOCAL_REQUEST_BYTES_MAX - 30) }, 10_000);
    expect(ok.ok).toBe(true);
    await c.close();
    const got = await raw(server.path, Buffer.alloc(LOCAL_REQUEST_BYTES_MAX + 2, 'x'));
    expect(got).toContain('longer than');
  });

  it('a client of a socket nobody serves fails at once', async () => {
    await expect(LocalApiClient.connect(join(dir, 'none.sock'))).rejects.toMatchObject({
      code: 'ENOENT',
    });
  });
});
