// /pcr/store/1.0.0 between two real libp2p hosts: a 16 MiB NAR reaches a reader slower than the
// network without its stream being reset (the credit window holds the sender back; without it
// the 4 MiB read buffer overflows), queries answer, and malformed requests get a PROTOCOL error.

import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Stream } from '@libp2p/interface';
import { generateKey } from '@libp2p/pnet';
import { lpStream } from '@libp2p/utils';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHost, type Host } from '../p2p/host.ts';
import { formatSha256 } from './hash.ts';
import { addPath } from './ingest.ts';
import { generateSecretKey } from './keys.ts';
import { LocalStore } from './local_store.ts';
import { narString } from './nar.ts';
import {
  CONTROL_FRAME_BYTES_MAX,
  HAVE_QUERY_MAX,
  INGEST_PATHS_PENDING_MAX,
  INGEST_QUEUE_BYTES_MAX,
  NAR_CHUNK_BYTES,
  NAR_WINDOW_BYTES,
  NARS_PER_REQUEST_MAX,
  REQUEST_BYTES_MAX,
  STORE_PROTOCOL,
  STORE_STREAMS_MAX,
  StoreClient,
  StoreServer,
  WriteBehind,
} from './protocol.ts';
import type { PathInfo } from './store.ts';

const psk = new Uint8Array(95);
generateKey(psk);
let dir = '';
let a: Host;
let b: Host;
let server: StoreServer;
let client: StoreClient;
let big: PathInfo;
let bigNar: Buffer;
const packr = new Packr({ useRecords: false, mapsAsObjects: true });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pcr-store-proto-'));
  [a, b] = await Promise.all(
    [0, 1].map(async () =>
      createHost({
        privateKey: await generateKeyPair('Ed25519'),
        psk,
        listen: ['/ip4/127.0.0.1/tcp/0'],
      }),
    ),
  );
  const store = await LocalStore.open({ dir: join(dir, 'a'), maxBytes: 1 << 30, fsync: false });
  const contents = Buffer.alloc(16 * 1024 * 1024, 7);
  bigNar = Buffer.concat([
    ...['nix-archive-1', '(', 'type', 'regular', 'contents'].map((t) => narString(t)),
    narString(contents),
    narString(')'),
  ]);
  big = {
    path: `/nix/store/${'3'.repeat(32)}-big`,
    narHash: formatSha256(createHash('sha256').update(bigNar).digest()),
    narSize: bigNar.length,
    references: [],
    sigs: [],
  };
  await addPath(store, big, [bigNar]);
  server = new StoreServer({ host: a, store, key: generateSecretKey('a-1') });
  await server.start();
  client = new StoreClient({ host: b, addrsOf: () => a.getMultiaddrs() });
});

afterAll(async () => {
  await server.close();
  await a.stop();
  await b.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('/pcr/store/1.0.0', () => {
  it('streams a 16 MiB NAR to a slow reader under the credit window', async () => {
    const parts: Uint8Array[] = [];
    let finished = false;
    const queue = new WriteBehind();
    const failed = await client.nars(
      a.peerId.toString(),
      [big],
      async () => ({
        write: async (c) => {
          parts.push(Uint8Array.from(c));
          await new Promise((r) => setTimeout(r, 5));
        },
        finish: async () => {
          finished = true;
        },
        abort: async () => {},
      }),
      queue,
    );
    expect([...failed.keys()]).toEqual([]);
    expect(finished).toBe(true);
    expect(Buffer.compare(Buffer.concat(parts), bigNar)).toBe(0);
    // The slow sink held the write-behind at its bound, never past it.
    expect(queue.bytesPeak).toBeGreaterThan(INGEST_QUEUE_BYTES_MAX / 2);
    expect(queue.bytesPeak).toBeLessThanOrEqual(INGEST_QUEUE_BYTES_MAX);
  });

  it(`a slow disk holds the write-behind at INGEST_QUEUE_BYTES_MAX (${INGEST_QUEUE_BYTES_MAX}) and INGEST_PATHS_PENDING_MAX (${INGEST_PATHS_PENDING_MAX})`, async () => {
    // Sinks that never finish until released: the client must stop reading (and granting
    // credit) at the bounds instead of buffering the rest of the stream.
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const queue = new WriteBehind();
    let writes = 0;
    let starts = 0;
    const big2 = [big, big];
    const pending = client.nars(
      a.peerId.toString(),
      big2,
      async () => {
        starts++;
        return {
          write: async () => {
            writes++;
            await gate;
          },
          finish: async () => {},
          abort: async () => {},
        };
      },
      queue,
    );
    await new Promise((r) => setTimeout(r, 500));
    // One write at work, the queue full behind it; nothing else read off the stream.
    expect(writes).toBe(1);
    expect(starts).toBe(1);
    expect(queue.bytes).toBeLessThanOrEqual(INGEST_QUEUE_BYTES_MAX);
    expect(queue.bytes).toBeGreaterThan(INGEST_QUEUE_BYTES_MAX - NAR_CHUNK_BYTES);
    release();
    expect([...(await pending).keys()]).toEqual([]);
    expect(queue.bytesPeak).toBeLessThanOrEqual(INGEST_QUEUE_BYTES_MAX);

    // Many paths: at most INGEST_PATHS_PENDING_MAX sinks at work at once (the queue on its own).
    const q2 = new WriteBehind();
    let finishGate: () => void = () => {};
    const finishing = new Promise<void>((r) => {
      finishGate = r;
    });
    const jobs = [];
    for (let i = 0; i < INGEST_PATHS_PENDING_MAX; i++) {
      await q2.roomForPath();
      const job = q2.start(big, async () => ({
        write: async () => {},
        finish: () => finishing,
        abort: async () => {},
      }));
      job.finish();
      jobs.push(job);
    }
    let more = false;
    const next = q2.roomForPath().then(() => {
      more = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(q2.pending).toBe(INGEST_PATHS_PENDING_MAX);
    expect(more).toBe(false);
    finishGate();
    await next;
    await q2.settled();
    expect(jobs.every((j) => j.ok)).toBe(true);
  });

  it('answers have, closure (signed by the server) and key; NOT_FOUND per path in nars', async () => {
    const peer = a.peerId.toString();
    const absent = '4'.repeat(32);
    expect(await client.have(peer, [big.path.slice(11, 43), absent, 'not-a-hash'])).toEqual([
      big.path,
    ]);
    const [info] = await client.closure(peer, [big.path]);
    expect(info!.sigs.some((s) => s.startsWith('a-1:'))).toBe(true);
    expect(await client.key(peer)).toMatch(/^a-1:/);
    const missing = { ...big, path: `/nix/store/${absent}-gone` };
    const failed = await client.nars(peer, [missing], async () => {
      throw new Error('not called');
    });
    expect(failed.get(missing.path)).toMatchObject({ code: 'NOT_FOUND' });
    await expect(client.closure(peer, [missing.path])).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('refuses malformed and oversized requests with a PROTOCOL error', async () => {
    const ask = async (req: unknown) => {
      const stream = await b.dialProtocol(a.getMultiaddrs(), STORE_PROTOCOL);
      const lp = lpStream(stream);
      await lp.write(packr.pack(req));
      const answer = packr.unpack((await lp.read()).subarray()) as {
        error?: { code: string; message: string };
      };
      await stream.close().catch(() => {});
      return answer.error;
    };
    expect(await ask({ op: 'format-disk' })).toMatchObject({
      code: 'PROTOCOL',
      message: expect.stringMatching(/unknown op/),
    });
    expect(await ask({ op: 'have', hashParts: 'x' })).toMatchObject({ code: 'PROTOCOL' });
    expect(await ask({ op: 'have', hashParts: Array(HAVE_QUERY_MAX + 1).fill('x') })).toMatchObject(
      { code: 'PROTOCOL', message: expect.stringMatching(/at most 10000/) },
    );
    expect(await ask({ op: 'nars', paths: [big.path], window: 10 })).toMatchObject({
      code: 'PROTOCOL',
      message: expect.stringMatching(/window/),
    });
    expect(await ask({ op: 'closure', paths: ['/etc/passwd'] })).toMatchObject({
      code: 'BAD_STORE_PATH',
    });
  });
});

/** One raw request from b to a's server; the whole answer frame. */
async function request(req: unknown): Promise<Record<string, unknown>> {
  const stream = await b.dialProtocol(a.getMultiaddrs(), STORE_PROTOCOL);
  const lp = lpStream(stream, { maxDataLength: CONTROL_FRAME_BYTES_MAX });
  await lp.write(packr.pack(req));
  const answer = packr.unpack((await lp.read()).subarray()) as Record<string, unknown>;
  await stream.close().catch(() => {});
  return answer;
}

/** Unsigned varint, as lpStream frames lengths. */
function varint(n: number): Buffer {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 0x80)) out.push((n % 0x80) | 0x80);
  out.push(n);
  return Buffer.from(out);
}

describe('/pcr/store/1.0.0 bounds', () => {
  it(`refuses closure and nars requests of more than NARS_PER_REQUEST_MAX (${NARS_PER_REQUEST_MAX}) paths`, async () => {
    const paths = (n: number) => Array(n).fill(big.path) as string[];
    const atBound = await request({ op: 'closure', paths: paths(NARS_PER_REQUEST_MAX) });
    expect(atBound.infos).toHaveLength(1);
    for (const req of [
      { op: 'closure', paths: paths(NARS_PER_REQUEST_MAX + 1) },
      { op: 'nars', paths: paths(NARS_PER_REQUEST_MAX + 1), window: NAR_WINDOW_BYTES },
    ]) {
      expect((await request(req)).error).toMatchObject({
        code: 'PROTOCOL',
        message: expect.stringMatching(/paths must be an array of at most 1000 strings/),
      });
    }
  });

  it('answers a request frame of REQUEST_BYTES_MAX and refuses a larger one', async () => {
    // One long "hash part" (not a valid one: answered with no paths) fills the frame.
    const frame = (n: number) => packr.pack({ op: 'have', hashParts: ['h'.repeat(n)] });
    const n = REQUEST_BYTES_MAX - 1024;
    const fits = REQUEST_BYTES_MAX - (frame(n).length - n);
    expect(frame(fits).length).toBe(REQUEST_BYTES_MAX);
    expect(await request({ op: 'have', hashParts: ['h'.repeat(fits)] })).toEqual({ paths: [] });
    expect((await request({ op: 'have', hashParts: ['h'.repeat(fits + 1)] })).error).toMatchObject({
      code: 'PROTOCOL',
      message: expect.stringMatching(/bad request frame: .*too long/),
    });
  });

  it('a client refuses an answer frame announced past CONTROL_FRAME_BYTES_MAX', async () => {
    const rogue = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      psk,
      listen: ['/ip4/127.0.0.1/tcp/0'],
    });
    try {
      await rogue.handle(STORE_PROTOCOL, async (stream) => {
        await lpStream(stream).read();
        // Announce one byte more than the bound, then send a little and wait.
        stream.send(varint(CONTROL_FRAME_BYTES_MAX + 1));
        stream.send(Buffer.alloc(1024));
      });
      const c = new StoreClient({ host: b, addrsOf: () => rogue.getMultiaddrs() });
      await expect(c.key(rogue.peerId.toString())).rejects.toThrow(
        `Message length too long - ${CONTROL_FRAME_BYTES_MAX + 1} > ${CONTROL_FRAME_BYTES_MAX}`,
      );
    } finally {
      await rogue.stop();
    }
  });

  it(`a server takes at most STORE_STREAMS_MAX (${STORE_STREAMS_MAX}) store streams per connection`, async () => {
    const open: Stream[] = [];
    const dial = async () => {
      const st = await b.dialProtocol(a.getMultiaddrs(), STORE_PROTOCOL, {
        maxOutboundStreams: 1_000,
      });
      open.push(st);
      return st;
    };
    try {
      // Idle requests: the server holds each stream open, waiting for its request frame.
      for (let i = 0; i < STORE_STREAMS_MAX; i++) await dial();
      // A stream past the bound is reset, unanswered.
      const extra = lpStream(await dial());
      await expect(
        (async () => {
          await extra.write(packr.pack({ op: 'key' }));
          await extra.read({ signal: AbortSignal.timeout(5_000) });
        })(),
      ).rejects.toThrow(/reset|closed|EOF/i);
      // The streams within the bound are still served.
      const first = lpStream(open[0]!);
      await first.write(packr.pack({ op: 'key' }));
      expect(packr.unpack((await first.read()).subarray())).toHaveProperty('key');
    } finally {
      for (const st of open) st.abort(new Error('test done'));
    }
    expect(await request({ op: 'key' })).toHaveProperty('key');
  });

  it(`a client opens at most STORE_STREAMS_MAX (${STORE_STREAMS_MAX}) store streams per connection`, async () => {
    // A peer that would take any number of streams, so only the client's own bound can refuse.
    const lenient = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      psk,
      listen: ['/ip4/127.0.0.1/tcp/0'],
    });
    const open: Stream[] = [];
    try {
      await lenient.handle(STORE_PROTOCOL, () => {}, { maxInboundStreams: 1_000 });
      const peer = lenient.peerId.toString();
      const c = new StoreClient({ host: b, addrsOf: () => lenient.getMultiaddrs() });
      for (let i = 0; i < STORE_STREAMS_MAX; i++) {
        open.push(
          await b.dialProtocol(lenient.getMultiaddrs(), STORE_PROTOCOL, {
            maxOutboundStreams: 1_000,
          }),
        );
      }
      await expect(c.have(peer, [big.path.slice(11, 43)])).rejects.toThrow(
        `Too many outbound protocol streams for protocol "${STORE_PROTOCOL}" - ${STORE_STREAMS_MAX + 1}/${STORE_STREAMS_MAX}`,
      );
    } finally {
      for (const st of open) st.abort(new Error('test done'));
      await lenient.stop();
    }
  });
});
