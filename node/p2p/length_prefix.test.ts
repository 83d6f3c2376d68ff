// length_prefix.ts: varint prefixes decoded with a shared signal while incomplete, and no RangeError
// built per message on a real pair of hosts (TCP, protector, noise, yamux, lpStream).

import { LengthPrefixedDecoder, lpStream } from '@libp2p/utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loopbackHosts } from '../../test/hosts.ts';
import type { Host } from './host.ts';
import {
  INCOMPLETE_LENGTH_PREFIX,
  InvalidLengthPrefixError,
  installQuietLengthPrefixes,
  LENGTH_PREFIX_BYTES_MAX,
  varintLength,
} from './length_prefix.ts';

/** Counts RangeErrors constructed (with or without `new`) while `run` runs. */
async function rangeErrorsBuilt(run: () => Promise<void> | void): Promise<number> {
  const original = globalThis.RangeError;
  let built = 0;
  globalThis.RangeError = new Proxy(original, {
    apply(target, self, args) {
      built++;
      return Reflect.apply(target, self, args);
    },
    construct(target, args, newTarget) {
      built++;
      return Reflect.construct(
        target,
        args,
        newTarget === globalThis.RangeError ? target : newTarget,
      );
    },
  });
  try {
    await run();
  } finally {
    globalThis.RangeError = original;
  }
  return built;
}

/** A list of byte arrays as lpStream hands them (get, byteLength). */
const list = (bytes: number[]) => ({ byteLength: bytes.length, get: (i: number) => bytes[i]! });

describe('varintLength', () => {
  it('decodes unsigned varints, from plain bytes and from a list', () => {
    const cases: [number[], number][] = [
      [[0x00], 0],
      [[0x7f], 127],
      [[0x80, 0x01], 128],
      [[0xac, 0x02], 300],
      [[0xff, 0xff, 0x03], 65_535],
      [[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 2 ** 49],
    ];
    for (const [bytes, value] of cases) {
      expect(varintLength(new Uint8Array(bytes))).toBe(value);
      expect(varintLength(list(bytes))).toBe(value);
    }
    // Bytes after the prefix are not read.
    expect(varintLength(new Uint8Array([0x05, 0xff, 0xff]))).toBe(5);
  });

  it('throws the one shared signal (a RangeError) while the prefix is incomplete', () => {
    for (const bytes of [[], [0x80], [0xff, 0xff]]) {
      let thrown: unknown;
      try {
        varintLength(list(bytes));
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBe(INCOMPLETE_LENGTH_PREFIX);
      expect(thrown).toBeInstanceOf(RangeError);
    }
  });

  it(`refuses a prefix of LENGTH_PREFIX_BYTES_MAX (${LENGTH_PREFIX_BYTES_MAX}) bytes that still says "more"`, () => {
    const bytes = new Array<number>(LENGTH_PREFIX_BYTES_MAX).fill(0x80);
    expect(() => varintLength(list(bytes))).toThrow(InvalidLengthPrefixError);
    expect(() => varintLength(list(bytes))).not.toThrow(RangeError);
    expect(() => varintLength(list(bytes.slice(1)))).toThrow(INCOMPLETE_LENGTH_PREFIX);
  });
});

describe('installQuietLengthPrefixes', () => {
  it("LengthPrefixedDecoder with a 2-byte prefix (noise's) builds no RangeError per chunk", async () => {
    installQuietLengthPrefixes();
    installQuietLengthPrefixes(); // once per process: the second call changes nothing
    const uint16 = Object.assign(
      (d: { byteLength: number; subarray(): Uint8Array }) => {
        if (d.byteLength < 2) throw RangeError('Could not decode int16BE');
        const b = d.subarray();
        return (b[0]! << 8) + b[1]!;
      },
      { bytes: 2 },
    );
    const decoder = new LengthPrefixedDecoder({ lengthDecoder: uint16, encodingLength: () => 2 });
    const frames: number[] = [];
    const built = await rangeErrorsBuilt(() => {
      for (let i = 0; i < 500; i++) {
        const frame = new Uint8Array([0, 3, i & 0xff, 1, 2]);
        // Whole frames, and frames split inside the prefix (as TCP may cut them).
        const chunks = i % 2 === 0 ? [frame] : [frame.subarray(0, 1), frame.subarray(1)];
        for (const c of chunks) for (const f of decoder.decode(c)) frames.push(f.subarray()[0]!);
      }
    });
    expect(frames).toEqual(Array.from({ length: 500 }, (_, i) => i & 0xff));
    expect(built).toBe(0);
  });
});

describe('length prefixes on a real pair of hosts', () => {
  const PROTOCOL = '/pcr/test-length-prefix/1.0.0';
  const MESSAGES = 300;
  let a: Host;
  let b: Host;
  let received: Promise<number[]>;

  beforeAll(async () => {
    [a, b] = (await loopbackHosts(2)) as [Host, Host];
    let done: (sizes: number[]) => void = () => {};
    received = new Promise((r) => {
      done = r;
    });
    await b.handle(PROTOCOL, async (stream) => {
      const lp = lpStream(stream, { maxDataLength: 4096, lengthDecoder: varintLength });
      const sizes: number[] = [];
      for (let i = 0; i < MESSAGES; i++) {
        const m = await lp.read();
        sizes.push(m.byteLength);
        await lp.write(m.subarray(0, 1));
      }
      done(sizes);
      await stream.close();
    });
  });

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('300 request/answer rounds of 150-byte messages (2-byte prefixes) build no RangeError each', async () => {
    const stream = await a.dialProtocol(b.getMultiaddrs(), PROTOCOL);
    const lp = lpStream(stream, { maxDataLength: 4096, lengthDecoder: varintLength });
    const msg = new Uint8Array(150).fill(7);
    await lp.write(msg);
    await lp.read(); // the connection and the stream are up: count from here
    const built = await rangeErrorsBuilt(async () => {
      for (let i = 1; i < MESSAGES; i++) {
        await lp.write(msg);
        await lp.read();
      }
    });
    expect(await received).toEqual(new Array(MESSAGES).fill(150));
    // Without length_prefix.ts: one per noise frame received and one per message read (each side).
    expect(built).toBeLessThan(10);
    await stream.close();
  });
});
