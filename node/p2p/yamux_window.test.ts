// The half-window rule of yamux_window.ts on a real pair of hosts (TCP, protector, noise, yamux):
// small messages draw no window update each, and a bulk transfer still gets its credit.

import type { Stream } from '@libp2p/interface';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loopbackHosts } from '../../test/hosts.ts';
import type { Host } from './host.ts';

const PROTOCOL = '/pcr/test-window/1.0.0';
const WINDOW_UPDATE = 1; // yamux frame type

/** Counts the window update frames a stream sends (the library's per-stream frame function). */
function countWindowUpdates(stream: Stream): { count: number } {
  const counter = { count: 0 };
  const s = stream as unknown as { sendFrame: (h: { type: number }, d?: unknown) => unknown };
  const send = s.sendFrame;
  s.sendFrame = (h, d) => {
    if (h.type === WINDOW_UPDATE) counter.count++;
    return send(h, d);
  };
  return counter;
}

describe('yamux window updates at half the window (yamux_window.ts)', () => {
  let a: Host;
  let b: Host;
  const received: { bytes: number; updates: { count: number } }[] = [];
  const done: (() => void)[] = [];

  beforeAll(async () => {
    [a, b] = (await loopbackHosts(2)) as [Host, Host];
    await b.handle(PROTOCOL, async (stream) => {
      const r = { bytes: 0, updates: countWindowUpdates(stream) };
      received.push(r);
      for await (const chunk of stream) r.bytes += chunk.byteLength;
      done.shift()?.();
      await stream.close();
    });
  });

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  async function send(
    frames: number,
    frameBytes: number,
  ): Promise<{ bytes: number; updates: number }> {
    const finished = new Promise<void>((r) => done.push(r));
    const stream = await a.dialProtocol(b.getMultiaddrs(), PROTOCOL);
    for (let i = 0; i < frames; i++) {
      if (!stream.send(new Uint8Array(frameBytes).fill(i))) await stream.onDrain();
      // One frame per turn of the event loop: each arrives as its own yamux data frame.
      await new Promise((r) => setImmediate(r));
    }
    await stream.close();
    await finished;
    const r = received.at(-1)!;
    return { bytes: r.bytes, updates: r.updates.count };
  }

  it('200 small frames (a Raft stream at rest) draw no window update but the opening ACK', async () => {
    const r = await send(200, 64);
    expect(r.bytes).toBe(200 * 64);
    expect(r.updates).toBe(1); // the ACK of the stream's SYN travels as a window update
  });

  it('8 MiB in 64 KiB frames arrive whole, with about one update per half window', async () => {
    const r = await send(128, 64 * 1024);
    expect(r.bytes).toBe(8 * 1024 * 1024);
    expect(r.updates).toBeGreaterThan(0);
    expect(r.updates).toBeLessThan(128 / 2);
  });
});
