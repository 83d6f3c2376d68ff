// Bulk transfers (bulk.ts, docs/store.md "Bulk transfers", D41): the sealed wire refuses any
// damaged, reordered, replayed or foreign frame and never hands out unauthenticated bytes; the
// listener serves only a socket with a live, unused ticket, within its bounds; and between two
// real libp2p hosts a client fetches over bulk, is held back by a slow sink through TCP alone, and
// falls back to the `nars` stream when the peer offers no bulk connection or its port is shut.

import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { generateKey } from '@libp2p/pnet';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { fileNar } from '../../test/store/nar_fixtures.ts';
import { createHost, type Host } from '../p2p/host.ts';
import {
  BULK_FRAME_BYTES_MAX,
  BULK_HELLO_TIMEOUT_MS,
  BULK_SOCKETS_MAX,
  BULK_TICKET_MS,
  BULK_TICKETS_MAX,
  BulkReader,
  BulkServer,
  bulkHostOf,
  dialBulk,
  FRAME_DATA,
  FRAME_END,
  FRAME_HEAD,
  type OpenedFrame,
  Opener,
  payloadOf,
  Sealer,
} from './bulk.ts';
import { StoreError } from './errors.ts';
import { formatSha256 } from './hash.ts';
import { addPath } from './ingest.ts';
import { generateSecretKey } from './keys.ts';
import { LocalStore } from './local_store.ts';
import {
  BULK_BUSY_RETRY_MS,
  BULK_RETRY_MS,
  bulkRetryAfterMs,
  INGEST_QUEUE_BYTES_MAX,
  StoreClient,
  StoreServer,
  WriteBehind,
} from './protocol.ts';
import { newCounters, type PathInfo } from './store.ts';

const NIX32 = '0123456789abcdfghijklmnpqrsvwxyz';
const sealedBytes = (bufs: Buffer[]) => Buffer.concat(bufs);

/** Everything `o` opens from what it was given (stops at the first undefined). */
function drain(o: Opener): OpenedFrame[] {
  const out: OpenedFrame[] = [];
  for (let f = o.next(); f !== undefined; f = o.next()) out.push(f);
  return out;
}

describe('the sealed wire', () => {
  const key = randomBytes(32);
  const payloads = [Buffer.from('head'), randomBytes(5_000), Buffer.alloc(0)];
  const types = [FRAME_HEAD, FRAME_DATA, FRAME_END] as const;
  const frames = (k = key) => {
    const s = new Sealer(k);
    return payloads.map((p, i) => sealedBytes(s.seal(types[i]!, p)));
  };

  it('opens frames in order however the bytes are split', () => {
    const all = Buffer.concat(frames());
    for (const step of [1, 7, 4096, all.length]) {
      const o = new Opener(key);
      const got: OpenedFrame[] = [];
      for (let off = 0; off < all.length; off += step) {
        o.push(all.subarray(off, off + step));
        got.push(...drain(o));
      }
      expect(got.map((f) => f.type)).toEqual([...types]);
      expect(got.map((f, i) => Buffer.compare(payloadOf(f), payloads[i]!))).toEqual([0, 0, 0]);
      expect(o.pending).toBe(0);
    }
  });

  it('never returns a damaged frame: every flipped byte fails that frame or stalls before it', () => {
    const fs = frames();
    const all = Buffer.concat(fs);
    const starts = fs.map((_, i) => fs.slice(0, i).reduce((n, f) => n + f.length, 0));
    // Every byte of the small frames, and a sample of the big one.
    const positions = [...Array(all.length).keys()].filter(
      (i) => i < starts[1]! + 64 || i >= starts[2]! - 64 || i % 97 === 0,
    );
    for (const i of positions) {
      const damaged = Buffer.from(all);
      damaged[i]! ^= 0x10;
      const frame = starts.findLastIndex((s) => s <= i);
      const o = new Opener(key);
      o.push(damaged);
      let opened: OpenedFrame[] = [];
      let threw = false;
      try {
        opened = drain(o);
      } catch {
        threw = true;
      }
      // The frames before the damaged one, and nothing of it or after it.
      expect(opened.length, `byte ${i}`).toBeLessThanOrEqual(frame);
      expect(threw || opened.length < types.length, `byte ${i}`).toBe(true);
    }
  });

  it('refuses swapped and replayed frames, a foreign key, and a length over BULK_FRAME_BYTES_MAX', () => {
    const [a, b, c] = frames();
    const swapped = new Opener(key);
    swapped.push(Buffer.concat([b!, a!]));
    expect(() => drain(swapped)).toThrow(/failed authentication/);
    const replayed = new Opener(key);
    replayed.push(Buffer.concat([a!, a!]));
    expect(() => drain(replayed)).toThrow(/failed authentication/);
    const foreign = new Opener(key);
    foreign.push(Buffer.concat(frames(randomBytes(32))));
    expect(() => drain(foreign)).toThrow(/failed authentication/);
    // Refused on the length alone, before the frame's bytes arrive.
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(BULK_FRAME_BYTES_MAX + 1, 0);
    const o = new Opener(key);
    o.push(huge);
    expect(() => o.next()).toThrow(/at most/);
    expect(c).toBeDefined();
    expect(() => new Sealer(key).seal(FRAME_DATA, Buffer.alloc(BULK_FRAME_BYTES_MAX))).toThrow();
  });

  it('binds to the host of the first TCP listen address, or to nothing', () => {
    expect(bulkHostOf(['/ip4/127.0.0.1/tcp/0'])).toBe('127.0.0.1');
    expect(bulkHostOf(['/ip4/0.0.0.0/tcp/4001', '/ip6/::/tcp/4001'])).toBe('0.0.0.0');
    expect(bulkHostOf(['/ip6/::1/tcp/4001'])).toBe('::1');
    expect(bulkHostOf(['/dns4/example.org/tcp/4001'])).toBeUndefined();
    expect(bulkHostOf([])).toBeUndefined();
  });
});

/** A raw socket to `port`: what it received, and whether it closed. */
function rawSocket(port: number): Promise<{ s: Socket; got: () => number; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    let n = 0;
    const s = connect({ host: '127.0.0.1', port });
    s.on('data', (d: Buffer) => {
      n += d.length;
    });
    const closed = new Promise<void>((r) => s.on('close', () => r()));
    s.once('error', () => {});
    s.once('connect', () => resolve({ s, got: () => n, closed }));
    s.once('error', reject);
  });
}

/** Waits for `cond` up to 20 s of wall time (setImmediate: the tests that fake setTimeout use it). */
async function until(cond: () => boolean): Promise<void> {
  const end = Date.now() + 20_000;
  while (!cond() && Date.now() < end) await new Promise((r) => setImmediate(r));
  expect(cond()).toBe(true);
}

describe('the bulk listener', () => {
  let server: BulkServer;
  const served: (readonly string[])[] = [];
  beforeAll(async () => {
    server = await BulkServer.listen({
      host: '127.0.0.1',
      serve: async (paths, out) => {
        served.push(paths);
        await out.write(FRAME_HEAD, Buffer.from('x'));
      },
    });
  });
  afterAll(async () => {
    await server.close();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('serves a ticket once; an unknown or used ticket gets nothing and is closed', async () => {
    const t = server.issue(['/nix/store/a']);
    const first = await rawSocket(t.port);
    first.s.write(t.ticket);
    await first.closed;
    expect(first.got()).toBeGreaterThan(0);
    expect(served).toEqual([['/nix/store/a']]);
    const refused = server.refused;
    for (const ticket of [t.ticket, randomBytes(16)]) {
      const again = await rawSocket(t.port);
      again.s.write(ticket);
      await again.closed;
      expect(again.got()).toBe(0);
    }
    expect(server.refused).toBe(refused + 2);
    expect(served).toHaveLength(1);
  });

  it('a transfer cut before END fails the reader at once (no stall), and a frame after END too', async () => {
    const b = await BulkServer.listen({
      host: '127.0.0.1',
      serve: async (paths, out) => {
        await out.write(FRAME_HEAD, Buffer.from(paths[0]!));
        await out.flush();
        if (paths[0] === 'cut') throw new Error('the server died');
      },
    });
    const cut = b.issue(['cut']);
    const r1 = new BulkReader(await dialBulk('127.0.0.1', cut), cut.key);
    expect((await r1.next()).type).toBe(FRAME_HEAD);
    const t0 = Date.now();
    await expect(r1.next()).rejects.toThrow();
    expect(Date.now() - t0).toBeLessThan(5_000);
    const whole = b.issue(['whole']);
    const r2 = new BulkReader(await dialBulk('127.0.0.1', whole), whole.key);
    expect((await r2.next()).type).toBe(FRAME_HEAD);
    expect((await r2.next()).type).toBe(FRAME_END);
    await expect(r2.next()).rejects.toThrow(/after END|ended before/);
    r1.close();
    r2.close();
    await b.close();
  });

  it(`forgets an unclaimed ticket after BULK_TICKET_MS (${BULK_TICKET_MS} ms)`, async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const t = server.issue(['/nix/store/late']);
    expect(server.outstanding).toBe(1);
    vi.advanceTimersByTime(BULK_TICKET_MS);
    expect(server.outstanding).toBe(0);
    vi.useRealTimers();
    const late = await rawSocket(t.port);
    late.s.write(t.ticket);
    await late.closed;
    expect(late.got()).toBe(0);
  });

  it(`has at most BULK_TICKETS_MAX (${BULK_TICKETS_MAX}) transfers waiting or running: the next is BUSY`, async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const b = await BulkServer.listen({ host: '127.0.0.1', serve: () => gate });
    const first = b.issue([]);
    for (let i = 1; i < BULK_TICKETS_MAX; i++) b.issue([]);
    expect(() => b.issue([])).toThrow(expect.objectContaining({ code: 'BUSY' }));
    // A claimed transfer still counts while it runs, and frees its place when done.
    const s = await rawSocket(b.port);
    s.s.write(first.ticket);
    await until(() => b.running === 1);
    expect(b.outstanding).toBe(BULK_TICKETS_MAX - 1);
    expect(() => b.issue([])).toThrow(expect.objectContaining({ code: 'BUSY' }));
    release();
    await s.closed;
    await until(() => b.running === 0);
    expect(() => b.issue([])).not.toThrow();
    await b.close();
  });

  it(`closes a socket without its ticket after BULK_HELLO_TIMEOUT_MS (${BULK_HELLO_TIMEOUT_MS} ms), and beyond BULK_SOCKETS_MAX (${BULK_SOCKETS_MAX}) at once`, async () => {
    const b = await BulkServer.listen({ host: '127.0.0.1', serve: async () => {} });
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const silent = [];
    for (let i = 0; i < BULK_SOCKETS_MAX; i++) silent.push(await rawSocket(b.port));
    await until(() => b.waiting === BULK_SOCKETS_MAX);
    const extra = await rawSocket(b.port);
    await extra.closed;
    expect(b.refused).toBe(1);
    vi.advanceTimersByTime(BULK_HELLO_TIMEOUT_MS - 1);
    expect(b.refused).toBe(1);
    vi.advanceTimersByTime(1);
    await Promise.all(silent.map((x) => x.closed));
    expect(b.refused).toBe(1 + BULK_SOCKETS_MAX);
    expect(silent.every((x) => x.got() === 0)).toBe(true);
    vi.useRealTimers();
    await b.close();
  });
});

describe('bulk transfers between two libp2p hosts', () => {
  const psk = new Uint8Array(95);
  generateKey(psk);
  let dir = '';
  let a: Host;
  let b: Host;
  let plain: Host;
  let server: StoreServer;
  let plainServer: StoreServer;
  let store: LocalStore;
  const infos: PathInfo[] = [];
  const nars = new Map<string, Buffer>();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pcr-bulk-'));
    [a, b, plain] = await Promise.all(
      [0, 1, 2].map(async () =>
        createHost({
          privateKey: await generateKeyPair('Ed25519'),
          psk,
          listen: ['/ip4/127.0.0.1/tcp/0'],
        }),
      ),
    );
    store = await LocalStore.open({ dir: join(dir, 'a'), maxBytes: 1 << 30, fsync: false });
    const contents = [
      randomBytes(16 * 1024 * 1024),
      ...Array.from({ length: 20 }, (_, i) => randomBytes(100 + i)),
    ];
    for (const [i, c] of contents.entries()) {
      const nar = fileNar(c);
      const info: PathInfo = {
        path: `/nix/store/${NIX32[i % 32]!.repeat(31)}${NIX32[Math.floor(i / 32)]!}-p${i}`,
        narHash: formatSha256(createHash('sha256').update(nar).digest()),
        narSize: nar.length,
        references: [],
        sigs: [],
      };
      await addPath(store, info, [nar]);
      infos.push(info);
      nars.set(info.path, nar);
    }
    server = new StoreServer({
      host: a,
      store,
      key: generateSecretKey('a-1'),
      bulkHost: '127.0.0.1',
    });
    await server.start();
    plainServer = new StoreServer({ host: plain, store, key: generateSecretKey('p-1') });
    await plainServer.start();
  });

  afterAll(async () => {
    await server.close();
    await plainServer.close();
    await Promise.all([a.stop(), b.stop(), plain.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  /** Sinks that collect each path's bytes; `delayMs` per write makes a slow disk. */
  function collector(delayMs = 0) {
    const got = new Map<string, Buffer[]>();
    const finished = new Set<string>();
    const start = async (info: PathInfo) => {
      got.set(info.path, []);
      return {
        write: async (c: Uint8Array) => {
          got.get(info.path)!.push(Buffer.from(c));
          if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
        },
        finish: async () => {
          finished.add(info.path);
        },
        abort: async () => {},
      };
    };
    const same = (path: string) =>
      finished.has(path) && Buffer.compare(Buffer.concat(got.get(path)!), nars.get(path)!) === 0;
    return { start, same };
  }

  it('moves a 16 MiB NAR and 20 small ones over a bulk connection, byte for byte', async () => {
    const counters = newCounters();
    const client = new StoreClient({ host: b, addrsOf: () => a.getMultiaddrs(), counters });
    await b.dial(a.getMultiaddrs());
    const c = collector();
    const failed = await client.nars(a.peerId.toString(), infos, c.start);
    expect([...failed.entries()].map(([p, e]) => `${p}: ${String(e)}`)).toEqual([]);
    expect(infos.every((i) => c.same(i.path))).toBe(true);
    expect(counters).toMatchObject({ bulkTransfers: 1, streamTransfers: 0 });
    expect(server.bulk!.outstanding).toBe(0);
  });

  it('a slow sink holds the sender back through TCP: the write-behind stays at its bound', async () => {
    const client = new StoreClient({ host: b, addrsOf: () => a.getMultiaddrs() });
    const c = collector(5);
    const queue = new WriteBehind();
    const failed = await client.nars(a.peerId.toString(), [infos[0]!], c.start, queue);
    expect([...failed.keys()]).toEqual([]);
    expect(c.same(infos[0]!.path)).toBe(true);
    expect(queue.bytesPeak).toBeLessThanOrEqual(INGEST_QUEUE_BYTES_MAX);
  });

  it('reports NOT_FOUND per path over bulk, the others arriving', async () => {
    const client = new StoreClient({ host: b, addrsOf: () => a.getMultiaddrs() });
    const missing = { ...infos[1]!, path: `/nix/store/${'z'.repeat(32)}-gone` };
    const c = collector();
    const failed = await client.nars(a.peerId.toString(), [missing, infos[2]!], c.start);
    expect(failed.get(missing.path)).toMatchObject({ code: 'NOT_FOUND' });
    expect(failed.size).toBe(1);
    expect(c.same(infos[2]!.path)).toBe(true);
  });

  it('falls back to the nars stream when the peer offers no bulk connection, and does not ask again at once', async () => {
    const counters = newCounters();
    const asked: string[] = [];
    const client = new StoreClient({
      host: b,
      addrsOf: () => plain.getMultiaddrs(),
      counters,
      log: (msg) => asked.push(msg),
    });
    for (let round = 0; round < 2; round++) {
      const c = collector();
      const failed = await client.nars(plain.peerId.toString(), infos.slice(0, 3), c.start);
      expect([...failed.keys()]).toEqual([]);
      expect(infos.slice(0, 3).every((i) => c.same(i.path))).toBe(true);
    }
    expect(counters).toMatchObject({ bulkTransfers: 0, streamTransfers: 2 });
    // Asked once: the second batch went straight to the stream (BULK_RETRY_MS).
    expect(asked).toEqual(['bulk transfer unavailable, using the nars stream']);
  });

  it(`a busy bulk listener sends the batch over the nars stream, and is asked again after BULK_BUSY_RETRY_MS (${BULK_BUSY_RETRY_MS} ms), not BULK_RETRY_MS`, async () => {
    const bulk = server.bulk!;
    while (bulk.outstanding < BULK_TICKETS_MAX) bulk.issue([]);
    const counters = newCounters();
    const why: string[] = [];
    const client = new StoreClient({
      host: b,
      addrsOf: () => a.getMultiaddrs(),
      counters,
      log: (_msg, fields) => why.push(String(fields?.err)),
    });
    const fetchTwo = async () => {
      const c = collector();
      const failed = await client.nars(a.peerId.toString(), infos.slice(1, 3), c.start);
      expect([...failed.keys()]).toEqual([]);
      expect(infos.slice(1, 3).every((i) => c.same(i.path))).toBe(true);
    };
    await fetchTwo();
    expect(counters).toMatchObject({ bulkTransfers: 0, streamTransfers: 1 });
    expect(why).toEqual([expect.stringMatching(/BULK_TICKETS_MAX/)]);
    await fetchTwo(); // within the back-off: straight to the stream, not asked
    expect(why.length).toBe(1);
    const later = Date.now() + BULK_BUSY_RETRY_MS + 1;
    const clock = vi.spyOn(Date, 'now').mockReturnValue(later);
    try {
      await fetchTwo(); // asked again (and busy again)
    } finally {
      clock.mockRestore();
    }
    expect(why.length).toBe(2);
    expect(counters).toMatchObject({ bulkTransfers: 0, streamTransfers: 3 });
    expect(bulkRetryAfterMs(new StoreError('BUSY', 'x'))).toBe(BULK_BUSY_RETRY_MS);
    expect(bulkRetryAfterMs(new StoreError('UNSUPPORTED', 'x'))).toBe(BULK_RETRY_MS);
    expect(bulkRetryAfterMs(new Error('ECONNREFUSED'))).toBe(BULK_RETRY_MS);
  });

  it('a bulk listener that cannot bind leaves the server serving over nars streams', async () => {
    const h = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      psk,
      listen: ['/ip4/127.0.0.1/tcp/0'],
    });
    const warned: string[] = [];
    // 192.0.2.1 (TEST-NET-1) is no address of this machine: the bind fails.
    const s = new StoreServer({
      host: h,
      store,
      key: generateSecretKey('h-1'),
      bulkHost: '192.0.2.1',
      warn: (msg) => warned.push(`warn: ${msg}`),
      alert: (msg) => warned.push(`alert: ${msg}`),
    });
    await s.start();
    expect(s.bulk).toBeUndefined();
    // Said to the operator (the daemon logs alerts at warn level, peers' misdeeds at debug).
    expect(warned).toEqual(['alert: no bulk listener: NARs are served over nars streams only']);
    const counters = newCounters();
    const client = new StoreClient({ host: b, addrsOf: () => h.getMultiaddrs(), counters });
    const c = collector();
    expect([...(await client.nars(h.peerId.toString(), [infos[3]!], c.start)).keys()]).toEqual([]);
    expect(c.same(infos[3]!.path)).toBe(true);
    expect(counters).toMatchObject({ bulkTransfers: 0, streamTransfers: 1 });
    await s.close();
    await h.stop();
  });

  it('falls back when the bulk port does not answer', async () => {
    const counters = newCounters();
    const client = new StoreClient({ host: b, addrsOf: () => a.getMultiaddrs(), counters });
    // The listener gone, tickets are still issued for its port: the connection is refused.
    const bulk = server.bulk!;
    await bulk.close();
    const c = collector();
    const failed = await client.nars(a.peerId.toString(), infos.slice(1, 4), c.start);
    expect([...failed.keys()]).toEqual([]);
    expect(infos.slice(1, 4).every((i) => c.same(i.path))).toBe(true);
    expect(counters).toMatchObject({ bulkTransfers: 0, streamTransfers: 1 });
  });
});
