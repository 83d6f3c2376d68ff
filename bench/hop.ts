// npm run bench:hop: what one message's round trip costs in each stack a member could use, so a
// claim like "the hops limit one client's write latency" can be checked. Two endpoints in one
// process (so the figure is the stacks' CPU per message, without the scheduling of separate
// processes) echo a 150-byte message (a Raft append of one small entry is about that size):
// - plain TCP (length-prefixed, no crypto): the anchor;
// - sealed TCP (bulk.ts's AES-256-GCM frames, as the store's bulk transfers use);
// - a libp2p stream as members talk today (TCP, the cluster-secret protector, noise, yamux).
// Usage: npm run bench:hop -- [--messages 3000]

import '../node/polyfill.ts';
import { randomBytes } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { generateKey } from '@libp2p/pnet';
import { lpStream } from '@libp2p/utils';
import { createHost } from '../node/p2p/host.ts';
import { varintLength } from '../node/p2p/length_prefix.ts';
import { FRAME_DATA, Opener, payloadOf, Sealer } from '../node/store/bulk.ts';
import { machine, machineLine, parseOptions } from './common.ts';

const opts = parseOptions(process.argv.slice(2), {
  messages: { default: 3000, min: 100, integer: true },
});
const N = opts.messages;
const msg = randomBytes(150);

/** Microseconds per round trip of `rt`, after a warm-up of N/10. */
async function time(rt: () => Promise<void>): Promise<number> {
  for (let i = 0; i < N / 10; i++) await rt();
  const t = performance.now();
  for (let i = 0; i < N; i++) await rt();
  return ((performance.now() - t) * 1000) / N;
}

/** A TCP echo over `frame`/`unframe` (plain: a u32 length; sealed: bulk.ts frames). */
async function tcpEcho(sealed: boolean): Promise<number> {
  const key = randomBytes(32);
  const codec = () => {
    const sealer = new Sealer(key);
    const opener = new Opener(key);
    let buf = Buffer.alloc(0);
    return {
      frame: (b: Buffer): Buffer[] => {
        if (sealed) return sealer.seal(FRAME_DATA, b);
        const h = Buffer.alloc(4);
        h.writeUInt32BE(b.length, 0);
        return [h, b];
      },
      /** Whole messages in what arrived. */
      unframe: (d: Buffer): Buffer[] => {
        const out: Buffer[] = [];
        if (sealed) {
          opener.push(d);
          for (let f = opener.next(); f !== undefined; f = opener.next()) out.push(payloadOf(f));
          return out;
        }
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          const n = buf.readUInt32BE(0);
          out.push(buf.subarray(4, 4 + n));
          buf = buf.subarray(4 + n);
        }
        return out;
      },
    };
  };
  const server = createServer((s: Socket) => {
    s.setNoDelay(true);
    const c = codec();
    s.on('data', (d: Buffer) => {
      for (const m of c.unframe(d)) for (const b of c.frame(m)) s.write(b);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const sock = connect({ port, host: '127.0.0.1', noDelay: true });
  await new Promise((r) => sock.once('connect', r));
  const c = codec();
  let wake: (() => void) | undefined;
  sock.on('data', (d: Buffer) => {
    if (c.unframe(d).length > 0) wake?.();
  });
  const us = await time(
    () =>
      new Promise<void>((r) => {
        wake = r;
        for (const b of c.frame(msg)) sock.write(b);
      }),
  );
  sock.destroy();
  server.close();
  return us;
}

async function libp2pEcho(): Promise<number> {
  const psk = new Uint8Array(95);
  generateKey(psk);
  const [a, b] = await Promise.all(
    [0, 1].map(async () =>
      createHost({
        privateKey: await generateKeyPair('Ed25519'),
        psk,
        listen: ['/ip4/127.0.0.1/tcp/0'],
      }),
    ),
  );
  await a!.handle('/pcr/bench-echo/1', async (stream) => {
    const lp = lpStream(stream, { lengthDecoder: varintLength });
    try {
      for (;;) await lp.write((await lp.read()).subarray());
    } catch {}
  });
  const lp = lpStream(await b!.dialProtocol(a!.getMultiaddrs(), '/pcr/bench-echo/1'), {
    lengthDecoder: varintLength,
  });
  const us = await time(async () => {
    await lp.write(msg);
    await lp.read();
  });
  await Promise.all([a!.stop(), b!.stop()]);
  return us;
}

process.stdout.write(`bench:hop — ${machineLine(machine(), 'one process, loopback')}\n`);
const plain = await tcpEcho(false);
const sealed = await tcpEcho(true);
const libp2p = await libp2pEcho();
const pad = (s: string, n: number) => s.padEnd(n);
process.stdout.write(`\n${pad('stack', 50)}${pad('µs per round trip', 20)}vs plain TCP\n`);
for (const [name, us] of [
  ['plain TCP (the anchor)', plain],
  ['sealed TCP (AES-256-GCM frames, bulk.ts)', sealed],
  ['libp2p stream (protector, noise, yamux)', libp2p],
] as const) {
  process.stdout.write(`${pad(name, 50)}${pad(us.toFixed(0), 20)}${(us / plain).toFixed(2)}x\n`);
}
process.exit(0);
