// The cluster protector: on an in-memory connection pair (handshake, refusals, data in both
// directions, back-pressure) and between real libp2p hosts over TCP (a stranger and a node on
// @libp2p/pnet are refused; a large transfer through a slow reader arrives intact).

import { createHash } from 'node:crypto';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { MessageStream, MultiaddrConnection, Upgrader } from '@libp2p/interface';
import { generateKey, preSharedKey } from '@libp2p/pnet';
import { tcp } from '@libp2p/tcp';
import { multiaddrConnectionPair } from '@libp2p/utils';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p, type Libp2p } from 'libp2p';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHost, type Host } from './host.ts';
import { clusterProtector, decodeSwarmKey, type ProtectorError } from './protector.ts';

function newSecret(): Uint8Array {
  const psk = new Uint8Array(95);
  generateKey(psk);
  return psk;
}
const psk = newSecret();
const MiB = 1024 * 1024;

/** Deterministic, non-repeating-looking bytes: chunk i of a transfer. */
function chunkOf(i: number, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  let x = (i + 1) * 2654435761;
  for (let j = 0; j < bytes; j += 4) {
    x = (x * 1103515245 + 12345) >>> 0;
    out.writeUInt32LE(x, j);
  }
  return out;
}

/** Both ends of an in-memory connection, each protected with its own secret. */
async function protectedPair(
  a: Uint8Array = psk,
  b: Uint8Array = psk,
  capacity?: number,
): Promise<[MessageStream, MessageStream, MultiaddrConnection, MultiaddrConnection]> {
  const [rawA, rawB] = multiaddrConnectionPair(capacity === undefined ? {} : { capacity });
  const [pa, pb] = await Promise.all([
    clusterProtector({ psk: a })().protect(rawA),
    clusterProtector({ psk: b })().protect(rawB),
  ]);
  return [pa, pb, rawA, rawB];
}

/**
 * The next 'drain' of `s`. Not `s.onDrain()`: in @libp2p/utils 7.4.1 its promise is never reset,
 * so after a stream's first drain it resolves at once and holds nobody back.
 */
function drained(s: MessageStream): Promise<void> {
  return new Promise((resolve) => s.addEventListener('drain', () => resolve(), { once: true }));
}

/** Everything `s` receives until `bytes` have arrived, as one buffer. */
function receive(s: MessageStream, bytes: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let got = 0;
    s.addEventListener('message', (evt) => {
      const b = Buffer.from(evt.data.subarray());
      parts.push(b);
      got += b.byteLength;
      if (got >= bytes) resolve(Buffer.concat(parts));
    });
  });
}

describe('the swarm key', () => {
  it('decodes to the 32 bytes of its hex line, and refuses anything else', () => {
    const key = decodeSwarmKey(psk);
    expect(key.byteLength).toBe(32);
    expect(Buffer.from(psk).toString().split('\n')[2]).toBe(key.toString('hex'));
    expect(() => decodeSwarmKey(new TextEncoder().encode('/key/swarm/psk/1.0.0/\n'))).toThrow(
      /not a cluster secret/,
    );
  });
});

describe('protector on an in-memory connection', () => {
  it('carries data both ways at once, and none of it in the clear', async () => {
    const [a, b, , rawB] = await protectedPair();
    const wire: Buffer[] = [];
    rawB.addEventListener('message', (evt) => wire.push(Buffer.from(evt.data.subarray())));
    const toB = Buffer.concat([0, 1, 2, 3].map((i) => chunkOf(i, MiB)));
    const toA = Buffer.concat([4, 5, 6, 7].map((i) => chunkOf(i, MiB)));
    const atB = receive(b, toB.byteLength);
    const atA = receive(a, toA.byteLength);
    a.send(toB);
    b.send(toA);
    expect((await atB).equals(toB)).toBe(true);
    expect((await atA).equals(toA)).toBe(true);
    const raw = Buffer.concat(wire);
    expect(raw.byteLength).toBe(toB.byteLength);
    expect(raw.indexOf(toB.subarray(1000, 1064))).toBe(-1);
    await a.close();
  });

  it('keeps the order and bytes of many small messages', async () => {
    const [a, b] = await protectedPair();
    const messages = Array.from({ length: 5_000 }, (_, i) => chunkOf(i, 4 * (1 + (i % 25))));
    const all = Buffer.concat(messages);
    const atB = receive(b, all.byteLength);
    for (const m of messages) a.send(m);
    expect((await atB).equals(all)).toBe(true);
  });

  it('refuses a peer with another secret, on both sides, before any data', async () => {
    const results = await Promise.allSettled([
      protectedPair(psk, newSecret()),
      protectedPair(newSecret(), psk),
    ]);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      const e = (r as PromiseRejectedResult).reason as ProtectorError;
      expect(e.code).toBe('WRONG_SECRET');
      expect(e.message).toMatch(/does not hold this cluster's secret/);
    }
  });

  it('drops a peer that never sends its nonce, and says how much came', async () => {
    const [rawA, rawB] = multiaddrConnectionPair();
    rawB.addEventListener('message', () => {}); // a silent peer: reads, never writes
    const t0 = performance.now();
    const err = (await clusterProtector({ psk, handshakeTimeoutMs: 200 })()
      .protect(rawA)
      .catch((e: unknown) => e)) as ProtectorError;
    expect(err.code).toBe('HANDSHAKE_TIMEOUT');
    expect(err.message).toMatch(/within 200 ms \(0 of 32 bytes\)/);
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(rawA.status).toBe('aborted');
  });

  it('refuses its own hello sent back (a reflecting peer)', async () => {
    const [rawA, rawB] = multiaddrConnectionPair();
    rawB.addEventListener('message', (evt) => rawB.send(evt.data));
    const err = (await clusterProtector({ psk })()
      .protect(rawA)
      .catch((e: unknown) => e)) as ProtectorError;
    expect(err.code).toBe('REFLECTED');
  });

  it('names @libp2p/pnet when the peer sends a pnet nonce and nothing more', async () => {
    const [rawA, rawB] = multiaddrConnectionPair();
    // pnet's responder: sends its 24-byte nonce, then waits for noise from the dialer.
    const pnet = preSharedKey({ psk })()
      .protect(rawB)
      .catch(() => undefined);
    const err = (await clusterProtector({ psk, handshakeTimeoutMs: 300 })()
      .protect(rawA)
      .catch((e: unknown) => e)) as ProtectorError;
    expect(err.code).toBe('HANDSHAKE_TIMEOUT');
    expect(err.message).toMatch(/24 of 32 bytes.*@libp2p\/pnet/);
    await pnet;
  });

  it('holds a fast writer back while the reader pauses (64 MiB, bounded in flight)', async () => {
    const [a, b] = await protectedPair(psk, psk, 8);
    const chunkBytes = 256 * 1024;
    const chunks = 256; // 64 MiB
    const sent = createHash('sha256');
    const got = createHash('sha256');
    let received = 0;
    let written = 0;
    let inFlightMax = 0;
    let waits = 0;
    let nextPause = 4 * MiB;
    const done = new Promise<void>((resolve) => {
      b.addEventListener('message', (evt) => {
        const part = evt.data.subarray();
        got.update(part);
        received += part.byteLength;
        // A slow reader: every 4 MiB, stop reading for 20 ms.
        if (received >= nextPause) {
          nextPause += 4 * MiB;
          b.pause();
          setTimeout(() => b.status === 'open' && b.resume(), 20);
        }
        if (received === chunks * chunkBytes) resolve();
      });
    });
    for (let i = 0; i < chunks; i++) {
      const c = chunkOf(i, chunkBytes);
      sent.update(c);
      written += c.byteLength;
      inFlightMax = Math.max(inFlightMax, written - received);
      if (!a.send(c)) {
        waits++;
        await drained(a);
      }
    }
    await done;
    expect(got.digest('hex')).toBe(sent.digest('hex'));
    expect(waits).toBeGreaterThan(0);
    // Without back-pressure the writer would queue everything at once (64 MiB in flight).
    expect(inFlightMax).toBeLessThan(8 * MiB);
  }, 60_000);
});

describe('protector between libp2p hosts over TCP', () => {
  let a: Host;
  let b: Host;
  const hosts: Libp2p[] = [];
  beforeAll(async () => {
    [a, b] = (await Promise.all(
      [0, 1].map(async () =>
        createHost({
          privateKey: await generateKeyPair('Ed25519'),
          psk,
          listen: ['/ip4/127.0.0.1/tcp/0'],
        }),
      ),
    )) as [Host, Host];
    hosts.push(a, b);
  });
  afterAll(async () => {
    await Promise.all(hosts.map((h) => h.stop()));
  });

  it('moves 64 MiB over TCP to a reader that stops and starts, held back by the socket', async () => {
    // Our layer alone on real sockets (no noise, no yamux): a paused reader pauses the socket, the
    // kernel buffers fill, the writer's socket says "full", and that must reach the writer.
    const protector = clusterProtector({ psk })();
    let accepted: (s: MessageStream) => void = () => {};
    const inbound = new Promise<MessageStream>((r) => {
      accepted = r;
    });
    const upgrader = {
      upgradeInbound: async (maConn: MultiaddrConnection) =>
        accepted(await protector.protect(maConn)),
      upgradeOutbound: async (maConn: MultiaddrConnection) => protector.protect(maConn),
    } as unknown as Upgrader;
    const transport = tcp()({ logger: a.logger });
    const listener = transport.createListener({ upgrader });
    await listener.listen(multiaddr('/ip4/127.0.0.1/tcp/0'));
    const writer = (await transport.dial(listener.getAddrs()[0]!, {
      upgrader,
      signal: AbortSignal.timeout(5_000),
    })) as unknown as MessageStream;
    const reader = await inbound;
    const total = 64 * MiB;
    const chunkBytes = 256 * 1024;
    const got = createHash('sha256');
    let received = 0;
    let nextPause = 4 * MiB;
    const done = new Promise<void>((resolve) => {
      reader.addEventListener('message', (evt) => {
        const part = evt.data.subarray();
        got.update(part);
        received += part.byteLength;
        if (received >= nextPause && received < total) {
          nextPause += 4 * MiB;
          reader.pause();
          setTimeout(() => reader.status === 'open' && reader.resume(), 20);
        }
        if (received === total) resolve();
      });
    });
    const sent = createHash('sha256');
    let inFlightMax = 0;
    let waits = 0;
    for (let i = 0, written = 0; written < total; i++) {
      const c = chunkOf(i, chunkBytes);
      sent.update(c);
      written += c.byteLength;
      inFlightMax = Math.max(inFlightMax, written - received);
      if (!writer.send(c)) {
        waits++;
        await drained(writer);
      }
    }
    await done;
    expect(got.digest('hex')).toBe(sent.digest('hex'));
    expect(waits).toBeGreaterThan(0);
    expect(inFlightMax).toBeLessThan(16 * MiB);
    writer.abort(new Error('test done'));
    await listener.close();
    // 64 MiB through JS framing and AES-CTR with pauses: ~2 s here when idle, over 60 s at a load
    // average of 30 (test:stress); the bound guards against a stall, not a speed.
  }, 180_000);

  it('moves 64 MiB between hosts intact', async () => {
    const protocol = '/pcr/test/bulk/1.0.0';
    const total = 64 * MiB;
    const got = createHash('sha256');
    let received = 0;
    const done = new Promise<void>((resolve) => {
      void b.handle(protocol, (s) => {
        s.addEventListener('message', (evt) => {
          const part = evt.data.subarray();
          got.update(part);
          received += part.byteLength;
          if (received === total) resolve();
        });
      });
    });
    const s = await a.dialProtocol(b.getMultiaddrs(), protocol);
    const sent = createHash('sha256');
    for (let i = 0, written = 0; written < total; i++) {
      const c = chunkOf(i, 256 * 1024);
      sent.update(c);
      written += c.byteLength;
      if (!s.send(c)) await drained(s);
    }
    await done;
    expect(got.digest('hex')).toBe(sent.digest('hex'));
    await s.close();
  }, 60_000);

  it('refuses a host with another secret', async () => {
    const stranger = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      psk: newSecret(),
      listen: ['/ip4/127.0.0.1/tcp/0'],
    });
    hosts.push(stranger);
    await expect(stranger.dial(a.getMultiaddrs())).rejects.toThrow(/cluster's secret/);
    await expect(a.dial(stranger.getMultiaddrs())).rejects.toThrow(/cluster's secret/);
    expect(a.getConnections(stranger.peerId)).toHaveLength(0);
  });

  it('refuses a host on @libp2p/pnet with the same secret, both ways', async () => {
    const old = await createLibp2p({
      privateKey: await generateKeyPair('Ed25519'),
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionProtector: preSharedKey({ psk }),
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
    });
    hosts.push(old);
    // pnet dials us: its noise hello arrives where our proof should be.
    await expect(
      old.dial(a.getMultiaddrs(), { signal: AbortSignal.timeout(3_000) }),
    ).rejects.toThrow();
    // We dial pnet: it sends 24 bytes and waits; we give up with a hint.
    // (The message naming pnet is checked above; here the dial's own timeout may win the race.)
    await expect(
      a.dial(old.getMultiaddrs(), { signal: AbortSignal.timeout(1_000) }),
    ).rejects.toThrow();
    expect(a.getConnections(old.peerId)).toHaveLength(0);
  });
});
