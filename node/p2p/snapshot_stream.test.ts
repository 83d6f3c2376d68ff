// Snapshot streams over a real libp2p connection: chunking, the window that holds the sender
// back, and refusals (absurd size, overrun, truncation, a message the receiver rejects), each
// with nothing delivered.

import type { Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loopbackHosts } from '../../test/hosts.ts';
import type { Host } from './host.ts';
import {
  receiveSnapshot,
  SNAPSHOT_CHUNK_BYTES,
  SNAPSHOT_MESSAGE_BYTES_MAX,
  SNAPSHOT_PROTOCOL,
  SNAPSHOT_WINDOW_CHUNKS,
  sendSnapshot,
} from './snapshot_stream.ts';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
let a: Host;
let b: Host;
/** What b's handler does with the next inbound stream. */
let onStream: (s: Stream) => void = () => {};

beforeAll(async () => {
  [a, b] = (await loopbackHosts(2)) as [Host, Host];
  await b.handle(SNAPSHOT_PROTOCOL, (s) => onStream(s));
});
afterAll(async () => {
  await a.stop();
  await b.stop();
});

const dial = (): Promise<Stream> => a.dialProtocol(b.getMultiaddrs(), SNAPSHOT_PROTOCOL);

/** b receives one snapshot with `accept`; resolves with the outcome. */
function receiveOne(
  accept: (bytes: Uint8Array) => string | undefined,
): Promise<{ ok: true } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    onStream = (s) =>
      receiveSnapshot(s, accept).then(
        () => resolve({ ok: true }),
        (e: Error) => resolve({ ok: false, error: e.message }),
      );
  });
}

describe('snapshot streams', () => {
  it('carries a message larger than a chunk in chunks, byte for byte', async () => {
    const bytes = new Uint8Array(5 * SNAPSHOT_CHUNK_BYTES + 3).map((_, i) => (i * 7) & 0xff);
    let got: Uint8Array | undefined;
    const received = receiveOne((x) => {
      got = x;
      return undefined;
    });
    const sent = await sendSnapshot(await dial(), bytes);
    expect(sent.chunks).toBe(6);
    expect(await received).toEqual({ ok: true });
    expect(Buffer.from(got!).equals(Buffer.from(bytes))).toBe(true);
  });

  it('keeps at most SNAPSHOT_WINDOW_CHUNKS chunks unacknowledged', async () => {
    const frames: number[] = [];
    onStream = (s) => {
      const lp = lpStream(s, { maxDataLength: SNAPSHOT_CHUNK_BYTES });
      void (async () => {
        for (;;) frames.push((await lp.read()).byteLength); // reads, never acknowledges
      })().catch(() => {});
    };
    const sending = sendSnapshot(await dial(), new Uint8Array(6 * SNAPSHOT_CHUNK_BYTES)).catch(
      (e: Error) => e,
    );
    await new Promise((r) => setTimeout(r, 700));
    expect(frames.length).toBe(1 + SNAPSHOT_WINDOW_CHUNKS); // the header and the window
    await a.hangUp(b.peerId);
    expect(await sending).toBeInstanceOf(Error);
  });

  it('refuses an absurd size, an overrun and a truncated stream, delivering nothing', async () => {
    let delivered = 0;
    const accept = (): undefined => {
      delivered++;
      return undefined;
    };
    const raw = async (frames: Uint8Array[], close: boolean): Promise<unknown> => {
      const out = receiveOne(accept);
      const s = await dial();
      const lp = lpStream(s, { maxDataLength: SNAPSHOT_CHUNK_BYTES });
      for (const f of frames) await lp.write(f);
      if (close) await s.close();
      return out;
    };
    expect(
      await raw([packr.pack({ size: SNAPSHOT_MESSAGE_BYTES_MAX + 1, chunks: 1025 })], false),
    ).toMatchObject({ ok: false, error: expect.stringMatching(/not within/) });
    expect(
      await raw([packr.pack({ size: 10, chunks: 1 }), new Uint8Array(20)], false),
    ).toMatchObject({ ok: false, error: expect.stringMatching(/more than the 10 bytes/) });
    expect(
      await raw(
        [packr.pack({ size: 3 * SNAPSHOT_CHUNK_BYTES, chunks: 3 }), new Uint8Array(5)],
        true,
      ),
    ).toMatchObject({ ok: false });
    expect(await raw([packr.pack({ size: 10, chunks: 7 })], false)).toMatchObject({
      ok: false,
      error: expect.stringMatching(/chunks do not fit/),
    });
    expect(delivered).toBe(0);
  });

  it('a message the receiver rejects fails the sender with the reason', async () => {
    const received = receiveOne(() => 'message from x sent by y');
    await expect(sendSnapshot(await dial(), new Uint8Array(100))).rejects.toThrow(
      /receiver refused the snapshot: message from x sent by y/,
    );
    expect(await received).toMatchObject({ ok: false });
  });
});
