// The formats on their own: nix base32, hashes, store paths, NAR grammar (every bad input the
// issue lists, each refused with BAD_NAR), narinfo strictness and signatures.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeNix32, encodeNix32 } from './base32.ts';
import { formatSha256, parseSha256 } from './hash.ts';
import {
  checkSignatures,
  formatPublicKey,
  formatSecretKey,
  generateSecretKey,
  parsePublicKey,
  parseSecretKey,
  signPath,
  TrustPolicy,
} from './keys.ts';
import {
  checkNar,
  NAR_DEPTH_MAX,
  NAR_DIR_ENTRIES_MAX,
  NAR_NAME_BYTES_MAX,
  NAR_TARGET_BYTES_MAX,
  NarParser,
  narString,
} from './nar.ts';
import {
  formatNarInfo,
  NARINFO_BYTES_MAX,
  NARINFO_REFERENCES_MAX,
  NARINFO_SIGS_MAX,
  parseNarInfo,
} from './narinfo.ts';
import type { PathInfo } from './store.ts';
import { parseStorePath, STORE_PATH_NAME_CHARS_MAX } from './store_path.ts';

const s = narString;

function file(contents: string, exec = false): Buffer[] {
  return [
    s('('),
    s('type'),
    s('regular'),
    ...(exec ? [s('executable'), s('')] : []),
    s('contents'),
    s(contents),
    s(')'),
  ];
}
function entry(name: string | Buffer, node: Buffer[]): Buffer[] {
  return [s('entry'), s('('), s('name'), s(name), s('node'), ...node, s(')')];
}
function dir(...entries: Buffer[][]): Buffer[] {
  return [s('('), s('type'), s('directory'), ...entries.flat(), s(')')];
}
function nar(node: Buffer[]): Buffer {
  return Buffer.concat([s('nix-archive-1'), ...node]);
}
async function refuse(bytes: Buffer, re: RegExp): Promise<void> {
  await expect(checkNar([bytes])).rejects.toMatchObject({
    code: 'BAD_NAR',
    message: expect.stringMatching(re),
  });
}

describe('nix base32', () => {
  it('matches Nix on a known digest and round-trips', () => {
    // sha256("") in nix32, as `nix hash to-base32` prints it.
    const d = createHash('sha256').update('').digest();
    expect(encodeNix32(d)).toBe('0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73');
    for (const n of [0, 1, 5, 20, 32, 64]) {
      const b = createHash('sha512').update(String(n)).digest().subarray(0, n);
      expect(Buffer.from(decodeNix32(encodeNix32(b), n))).toEqual(Buffer.from(b));
    }
  });
  it('refuses bad characters, lengths and overflowing high bits', () => {
    expect(() => decodeNix32('e'.repeat(52), 32)).toThrow(/invalid nix32/);
    expect(() => decodeNix32('0'.repeat(51), 32)).toThrow(/51 characters/);
    expect(() => decodeNix32(`z${'0'.repeat(51)}`, 32)).toThrow(/overflows/);
  });
  it('parses sha256 in nix32, base16, base64 and SRI to one form', () => {
    const d = createHash('sha256').update('x').digest();
    const want = formatSha256(d);
    for (const f of [
      want,
      `sha256:${d.toString('hex')}`,
      `sha256:${d.toString('base64')}`,
      `sha256-${d.toString('base64')}`,
    ]) {
      expect(formatSha256(parseSha256(f))).toBe(want);
    }
    expect(() => parseSha256(`md5:${d.toString('hex')}`)).toThrow(/unsupported hash/);
  });
});

describe('store paths', () => {
  const h = '0'.repeat(32);
  it('accepts Nix names and refuses the rest', () => {
    expect(parseStorePath(`/nix/store/${h}-hello-2.12`).name).toBe('hello-2.12');
    for (const bad of [
      `/nix/store/${h}`,
      `/nix/store/${h}-`,
      `/nix/store/${h}-.hidden`,
      `/nix/store/${h}-a/b`,
      `/nix/store/${h}-a b`,
      `/nix/store/${'e'.repeat(32)}-x`,
      `/tmp/${h}-x`,
      `/nix/store/${h}-${'a'.repeat(STORE_PATH_NAME_CHARS_MAX + 1)}`,
    ]) {
      expect(() => parseStorePath(bad), bad).toThrow(
        expect.objectContaining({ code: 'BAD_STORE_PATH' }),
      );
    }
  });
});

describe('NAR parser', () => {
  it('accepts a well-formed NAR and reports its contents', async () => {
    const seen: string[] = [];
    const bytes = nar(
      dir(
        entry('a', file('hi', true)),
        entry('b', [s('('), s('type'), s('symlink'), s('target'), s('a'), s(')')]),
      ),
    );
    expect(
      await checkNar([bytes], {
        file: (p, x, n) => seen.push(`${p}:${x}:${n}`),
        symlink: (p, t) => seen.push(`${p}->${t}`),
      }),
    ).toBe(bytes.length);
    expect(seen).toEqual(['a:true:2', 'b->a']);
  });
  it('parses the same bytes fed one byte at a time', () => {
    const bytes = nar(dir(entry('a', file('hello world')), entry('c', dir(entry('d', file(''))))));
    const p = new NarParser();
    for (const b of bytes) p.push(Uint8Array.of(b));
    p.end();
    expect(p.bytes).toBe(bytes.length);
  });
  it('refuses ".." and "." as names', async () => {
    await refuse(nar(dir(entry('..', file('x')))), /entry name "\.\."/);
    await refuse(nar(dir(entry('.', file('x')))), /entry name "\."/);
  });
  it('refuses "/" and NUL in names, and empty names', async () => {
    await refuse(nar(dir(entry('a/b', file('x')))), /"\/" in entry name/);
    await refuse(nar(dir(entry(Buffer.from('a\0b'), file('x')))), /NUL in an entry name/);
    await refuse(nar(dir(entry('', file('x')))), /empty entry name/);
  });
  it('refuses unsorted and duplicate entries', async () => {
    await refuse(nar(dir(entry('b', file('x')), entry('a', file('x')))), /not sorted/);
    await refuse(nar(dir(entry('a', file('x')), entry('a', file('x')))), /duplicate entry/);
  });
  it('refuses a truncated stream, wherever it stops', async () => {
    const bytes = nar(dir(entry('a', file('hello'))));
    for (const cut of [0, 7, 8, 20, bytes.length - 8, bytes.length - 1]) {
      await refuse(bytes.subarray(0, cut), /truncated/);
    }
  });
  it('refuses absurd length fields, and lengths past the declared size', async () => {
    const big = Buffer.alloc(8);
    big.writeBigUInt64LE(2n ** 63n);
    await refuse(Buffer.concat([big]), /absurd length/);
    const huge = Buffer.alloc(8);
    huge.writeBigUInt64LE(2n ** 40n);
    const prefix = Buffer.concat([
      s('nix-archive-1'),
      s('('),
      s('type'),
      s('regular'),
      s('contents'),
      huge,
    ]);
    expect(() => new NarParser({}, 10_000).push(prefix)).toThrow(
      /reaches past the NAR's declared size/,
    );
    // A keyword token may not be long (no buffering of a 1 MB "keyword").
    const long = Buffer.alloc(8);
    long.writeBigUInt64LE(1_000_000n);
    await refuse(Buffer.concat([s('nix-archive-1'), long]), /token where at most 64/);
  });
  it('refuses names past NAR_NAME_BYTES_MAX and symlink targets past NAR_TARGET_BYTES_MAX', async () => {
    await checkNar([nar(dir(entry('n'.repeat(NAR_NAME_BYTES_MAX), file('x'))))]);
    await refuse(
      nar(dir(entry('n'.repeat(NAR_NAME_BYTES_MAX + 1), file('x')))),
      /at most 255 bytes/,
    );
    const link = (t: string) => nar([s('('), s('type'), s('symlink'), s('target'), s(t), s(')')]);
    await checkNar([link('t'.repeat(NAR_TARGET_BYTES_MAX))]);
    await refuse(link('t'.repeat(NAR_TARGET_BYTES_MAX + 1)), /at most 4095 bytes/);
  });
  it('refuses nesting deeper than NAR_DEPTH_MAX, trailing bytes, bad padding and bad magic', async () => {
    let node = file('x');
    for (let i = 0; i <= NAR_DEPTH_MAX; i++) node = dir(entry('d', node));
    await refuse(nar(node), /nested deeper/);
    await refuse(Buffer.concat([nar(file('x')), Buffer.alloc(8)]), /trailing bytes/);
    const padded = nar(file('x'));
    padded[padded.length - 16 - 1] = 1;
    await refuse(padded, /non-zero padding/);
    await refuse(Buffer.concat([s('nix-archive-2'), ...file('x')]), /expected "nix-archive-1"/);
    await refuse(nar([s('('), s('type'), s('fifo'), s(')')]), /unknown node type/);
  });
  it('accepts NAR_DIR_ENTRIES_MAX entries in a directory and refuses the next one', () => {
    // No smaller bound to lower: a million empty subdirectories (9 tokens, 144 bytes each)
    // streamed in chunks. The refusal must come exactly at the first entry past the bound.
    const entry = Buffer.concat(
      ['entry', '(', 'name', '0000000', 'node', '(', 'type', 'directory', ')', ')'].map((t) =>
        s(t),
      ),
    );
    const nameAt = 3 * 16 + 8;
    const head = Buffer.concat([s('nix-archive-1'), s('('), s('type'), s('directory')]);
    const perChunk = 65_536;
    const entries = NAR_DIR_ENTRIES_MAX + 1;
    expect(entries).toBeLessThan(10_000_000); // the 7-digit names stay sorted
    const p = new NarParser();
    const feed = () => {
      p.push(head);
      for (let i = 0; i < entries; i += perChunk) {
        const n = Math.min(perChunk, entries - i);
        const chunk = Buffer.allocUnsafe(entry.length * n);
        for (let j = 0; j < n; j++) {
          entry.copy(chunk, j * entry.length);
          chunk.write(String(i + j).padStart(7, '0'), j * entry.length + nameAt, 'latin1');
        }
        p.push(chunk);
      }
    };
    expect(feed).toThrow(/more than 1000000 entries in the root/);
    // Everything up to the "entry" token of entry NAR_DIR_ENTRIES_MAX + 1 was parsed.
    expect(p.bytes).toBe(head.length + NAR_DIR_ENTRIES_MAX * entry.length + 16);
  }, 120_000);
});

const info: PathInfo = {
  path: `/nix/store/${'1'.repeat(32)}-x`,
  narHash: formatSha256(createHash('sha256').update('x').digest()),
  narSize: 120,
  references: [`/nix/store/${'0'.repeat(32)}-dep`, `/nix/store/${'1'.repeat(32)}-x`],
  sigs: [],
};

describe('narinfo', () => {
  const text = formatNarInfo({
    ...info,
    url: 'nar/x.nar',
    compression: 'none',
    fileHash: info.narHash,
    fileSize: 120,
    deriver: `/nix/store/${'2'.repeat(32)}-x.drv`,
  });
  it('round-trips', () => {
    expect(formatNarInfo(parseNarInfo(text))).toBe(text);
  });
  it('refuses unknown fields, repeated fields and missing ones', () => {
    expect(() => parseNarInfo(`${text}Extra: 1\n`)).toThrow(/unknown field "Extra"/);
    expect(() => parseNarInfo(`${text}NarSize: 1\n`)).toThrow(/given twice/);
    expect(() => parseNarInfo(text.replace(/NarHash.*\n/, ''))).toThrow(/missing field NarHash/);
    expect(() => parseNarInfo(text.replace('NarSize: 120', 'NarSize: -1'))).toThrow(/not a size/);
  });
  it('refuses oversized narinfo and too many signatures', () => {
    expect(() => parseNarInfo(`${text}${'Sig: a:b\n'.repeat(NARINFO_BYTES_MAX / 8)}`)).toThrow(
      /NARINFO_BYTES_MAX/,
    );
    expect(() => parseNarInfo(`${text}${'Sig: a:b\n'.repeat(NARINFO_SIGS_MAX + 1)}`)).toThrow(
      /NARINFO_SIGS_MAX/,
    );
  });
  it('refuses more than NARINFO_REFERENCES_MAX references', () => {
    const refs = Array.from(
      { length: NARINFO_REFERENCES_MAX + 1 },
      (_, i) => `${String(i).padStart(32, '0')}-r`,
    );
    expect(() =>
      parseNarInfo(text.replace(/References: .*\n/, `References: ${refs.join(' ')}\n`)),
    ).toThrow(/NARINFO_REFERENCES_MAX/);
  });
  it('refuses an unknown compression with UNSUPPORTED', () => {
    expect(() => parseNarInfo(text.replace('Compression: none', 'Compression: rot13'))).toThrow(
      expect.objectContaining({ code: 'UNSUPPORTED' }),
    );
  });
});

describe('signing keys', () => {
  it('round-trips Nix key formats and refuses broken ones', () => {
    const k = generateSecretKey('t-1');
    expect(formatSecretKey(parseSecretKey(formatSecretKey(k)))).toBe(formatSecretKey(k));
    expect(formatPublicKey(parsePublicKey(formatPublicKey(k.publicKey)))).toBe(
      formatPublicKey(k.publicKey),
    );
    expect(() => parseSecretKey('t-1:AAAA')).toThrow(expect.objectContaining({ code: 'BAD_KEY' }));
    expect(() => parsePublicKey('nocolon')).toThrow(/name:base64/);
    const other = generateSecretKey('t-1');
    const mixed = `t-1:${Buffer.concat([k.seed, other.publicKey.bytes]).toString('base64')}`;
    expect(() => parseSecretKey(mixed)).toThrow(/does not match/);
  });
  it('accepts a good signature and refuses bad, altered and missing ones', () => {
    const k = generateSecretKey('t-1');
    const trust = new TrustPolicy([k.publicKey]);
    const signed = { ...info, sigs: [signPath(k, info)] };
    checkSignatures(signed, trust);
    expect(() => checkSignatures({ ...signed, narSize: 121 }, trust)).toThrow(
      expect.objectContaining({ code: 'BAD_SIGNATURE' }),
    );
    expect(() => checkSignatures({ ...signed, references: [] }, trust)).toThrow(
      expect.objectContaining({ code: 'BAD_SIGNATURE' }),
    );
    expect(() => checkSignatures({ ...info, sigs: [] }, trust)).toThrow(
      expect.objectContaining({ code: 'UNTRUSTED' }),
    );
    expect(() => checkSignatures(signed, new TrustPolicy())).toThrow(
      expect.objectContaining({ code: 'UNTRUSTED' }),
    );
  });
});
