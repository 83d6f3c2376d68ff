// API sessions over a real libp2p connection on loopback: pipelined requests answered out of
// order, the in-flight bound holding the reader back, bad frames ending only that session, a
// client that closes getting its in-flight answers, and timeouts.

import { generateKeyPair } from '@libp2p/crypto/keys';
import { generateKey } from '@libp2p/pnet';
import { lpStream } from '@libp2p/utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHost, type Host } from '../p2p/host.ts';
import { ApiClient } from './client.ts';
import {
  API_SESSION_INFLIGHT_MAX,
  API_SESSION_PROTOCOL,
  ApiSession,
  serveSession,
} from './session.ts';
import {
  API_PROTOCOL,
  API_REQUEST_BYTES_MAX,
  type ApiResponse,
  packr,
  requestExchange,
  serveExchange,
} from './wire.ts';

const psk = new Uint8Array(95);
generateKey(psk);
let server: Host;
let client: Host;
/** Requests the server is running now, and the most it ran at once. */
let running = 0;
let runningMax = 0;
/** Requests held until release() (for the in-flight bound). */
const held: (() => void)[] = [];

async function handle(req: unknown): Promise<ApiResponse> {
  running++;
  runningMax = Math.max(runningMax, running);
  try {
    const r = req as { op: string; delayMs?: number; n?: number };
    if (r.op === 'hold') await new Promise<void>((res) => held.push(res));
    if (r.op === 'sleep') await new Promise((res) => setTimeout(res, r.delayMs));
    if (r.op === 'throw') throw new Error('boom');
    return { ok: true, echo: r.n ?? null };
  } finally {
    running--;
  }
}

beforeAll(async () => {
  server = await createHost({
    privateKey: await generateKeyPair('Ed25519'),
    psk,
    listen: ['/ip4/127.0.0.1/tcp/0'],
  });
  await server.handle(API_SESSION_PROTOCOL, (stream) => void serveSession(stream, handle), {
    maxInboundStreams: 64,
  });
  await server.handle(API_PROTOCOL, (stream) => void serveExchange(stream, handle));
  client = await createHost({ privateKey: await generateKeyPair('Ed25519'), psk, listen: [] });
});
afterAll(async () => {
  await client.stop();
  await server.stop();
});

async function session(): Promise<ApiSession> {
  return new ApiSession(await client.dialProtocol(server.getMultiaddrs(), API_SESSION_PROTOCOL));
}

describe('API sessions', () => {
  it('pipelines requests on one stream and matches answers that complete out of order', async () => {
    const s = await session();
    const slow = s.request({ op: 'sleep', delayMs: 200, n: 1 }, 5000);
    const fast = await Promise.all(
      Array.from({ length: 50 }, (_, i) => s.request({ op: 'echo', n: i + 2 }, 5000)),
    );
    expect(fast.map((r) => (r as unknown as { echo: number }).echo)).toEqual(
      Array.from({ length: 50 }, (_, i) => i + 2),
    );
    expect(s.inflight).toBe(1); // the slow one is still running: answers did not wait for it
    expect(((await slow) as unknown as { echo: number }).echo).toBe(1);
    expect(await s.request({ op: 'throw' }, 5000)).toMatchObject({
      ok: false,
      error: { code: 'UNAVAILABLE' },
    });
    s.close();
  });

  it('runs at most API_SESSION_INFLIGHT_MAX requests of a session at once', async () => {
    const s = await session();
    runningMax = 0;
    const n = API_SESSION_INFLIGHT_MAX + 50;
    const all = Array.from({ length: n }, (_, i) => s.request({ op: 'hold', n: i }, 30_000));
    await new Promise((r) => setTimeout(r, 500));
    expect(held.length).toBe(API_SESSION_INFLIGHT_MAX);
    while (held.length > 0) held.shift()!();
    await new Promise((r) => setTimeout(r, 100));
    while (held.length > 0) held.shift()!();
    const answers = await Promise.all(all);
    expect(answers.every((a) => a.ok)).toBe(true);
    expect(runningMax).toBe(API_SESSION_INFLIGHT_MAX);
    s.close();
  });

  it('a malformed frame ends that session only; the client rejects its pending requests', async () => {
    const stream = await client.dialProtocol(server.getMultiaddrs(), API_SESSION_PROTOCOL);
    const lp = lpStream(stream);
    await lp.write(packr.pack({ not: 'a frame' }));
    const [id, answer] = packr.unpack((await lp.read()).subarray()) as [number, ApiResponse];
    expect(id).toBe(0);
    expect(answer).toMatchObject({ ok: false, error: { code: 'INVALID' } });
    await expect(lp.read()).rejects.toThrow();

    const garbage = await client.dialProtocol(server.getMultiaddrs(), API_SESSION_PROTOCOL);
    const glp = lpStream(garbage);
    await glp.write(new Uint8Array([0xc1, 0xc1, 0xc1])); // never-used msgpack bytes
    await expect(glp.read()).rejects.toThrow();

    const s = await session(); // the member still serves new sessions
    expect(await s.request({ op: 'echo', n: 7 }, 5000)).toMatchObject({ ok: true, echo: 7 });
    s.close();
    await expect(s.request({ op: 'echo' }, 5000)).rejects.toThrow(/session closed/);
  });

  it('a request over API_REQUEST_BYTES_MAX is refused by name, before it is sent or read', async () => {
    const s = await session();
    const big = 'x'.repeat(API_REQUEST_BYTES_MAX);
    expect(await s.request({ op: 'echo', big }, 5000)).toMatchObject({
      ok: false,
      error: { code: 'INVALID', message: expect.stringContaining('API_REQUEST_BYTES_MAX') },
    });
    // Refused by the client: the session goes on.
    expect(await s.request({ op: 'echo', n: 1 }, 5000)).toMatchObject({ ok: true, echo: 1 });
    s.close();

    // A client that sends one anyway (10 MiB) gets the bound's name on frame 0, not a reset.
    const stream = await client.dialProtocol(server.getMultiaddrs(), API_SESSION_PROTOCOL);
    const lp = lpStream(stream, { maxDataLength: 16 << 20 });
    void lp.write(packr.pack([1, { op: 'echo', big: 'y'.repeat(10 << 20) }])).catch(() => {});
    const [id, answer] = packr.unpack((await lp.read()).subarray()) as [number, ApiResponse];
    expect(id).toBe(0);
    expect(answer).toMatchObject({
      ok: false,
      error: { message: expect.stringMatching(/is \d+ bytes, longer than API_REQUEST_BYTES_MAX/) },
    });
  });

  it('one-shot exchanges refuse an oversized request by name too', async () => {
    const big = 'x'.repeat(API_REQUEST_BYTES_MAX);
    const stream = await client.dialProtocol(server.getMultiaddrs(), API_PROTOCOL);
    expect(await requestExchange(stream, { op: 'echo', big })).toMatchObject({
      ok: false,
      error: { message: expect.stringContaining('API_REQUEST_BYTES_MAX') },
    });
    const raw = await client.dialProtocol(server.getMultiaddrs(), API_PROTOCOL);
    const lp = lpStream(raw, { maxDataLength: 16 << 20 });
    void lp.write(packr.pack({ op: 'echo', big: 'y'.repeat(10 << 20) })).catch(() => {});
    expect(packr.unpack((await lp.read()).subarray())).toMatchObject({
      ok: false,
      error: { message: expect.stringContaining('API_REQUEST_BYTES_MAX') },
    });
  });

  it('a client that closes its side still gets the answers in flight', async () => {
    const stream = await client.dialProtocol(server.getMultiaddrs(), API_SESSION_PROTOCOL);
    const lp = lpStream(stream);
    await lp.writeV([
      packr.pack([1, { op: 'sleep', delayMs: 100, n: 1 }]),
      packr.pack([2, { op: 'echo', n: 2 }]),
    ]);
    await stream.close();
    const got = [
      packr.unpack((await lp.read()).subarray()),
      packr.unpack((await lp.read()).subarray()),
    ];
    expect(got).toEqual([
      [2, { ok: true, echo: 2 }],
      [1, { ok: true, echo: 1 }],
    ]);
  });

  it('a request without an answer in time is rejected; the session goes on', async () => {
    const s = await session();
    await expect(s.request({ op: 'sleep', delayMs: 300 }, 50)).rejects.toThrow(/no answer within/);
    expect(await s.request({ op: 'echo', n: 3 }, 5000)).toMatchObject({ ok: true, echo: 3 });
    s.close();
  });

  it('ApiClient opens a new session after the old one failed', async () => {
    const c = await ApiClient.connect(server.getMultiaddrs()[0]!.toString(), psk);
    expect(await c.request({ op: 'echo', n: 1 })).toMatchObject({ ok: true });
    for (const conn of server.getConnections()) await conn.close();
    await expect
      .poll(async () => (await c.request({ op: 'echo', n: 2 }, 2000).catch(() => undefined))?.ok)
      .toBe(true);
    await c.close();
  });
});
