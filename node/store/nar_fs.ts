// NAR on the file system: the writer, byte-identical to `nix-store --dump`, and the restore of a
// NAR into a directory (built on the pure parser in nar.ts).

import { closeSync, mkdirSync, openSync, symlinkSync, writeSync } from 'node:fs';
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { StoreError } from './errors.ts';
import { checkNar, NAR_MAGIC, type NarSink, narString, pad } from './nar.ts';

/** The writer reads files in chunks of this size. */
export const NAR_READ_CHUNK_BYTES = 1 << 20;

const ZERO8 = new Uint8Array(8);

// ---------------------------------------------------------------------------------------------
// Writer

/** Batches small tokens into buffers so a NAR of many small files is not a stream of crumbs. */
class TokenBuffer {
  private parts: Buffer[] = [];
  private bytes = 0;
  static readonly FLUSH_BYTES = 256 * 1024;
  str(s: Uint8Array | string): void {
    const t = narString(s);
    this.parts.push(t);
    this.bytes += t.length;
  }
  raw(b: Uint8Array): void {
    this.parts.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    this.bytes += b.length;
  }
  full(): boolean {
    return this.bytes >= TokenBuffer.FLUSH_BYTES;
  }
  take(): Buffer | undefined {
    if (this.bytes === 0) return undefined;
    const out = Buffer.concat(this.parts, this.bytes);
    this.parts = [];
    this.bytes = 0;
    return out;
  }
}

/** The NAR serialisation of `fsPath`, as `nix-store --dump` writes it. */
export async function* dumpNar(fsPath: string): AsyncGenerator<Uint8Array> {
  const tb = new TokenBuffer();
  tb.str(NAR_MAGIC);
  yield* dumpNode(Buffer.from(fsPath), tb);
  const rest = tb.take();
  if (rest !== undefined) yield rest;
}

async function* dumpNode(p: Buffer, tb: TokenBuffer): AsyncGenerator<Uint8Array> {
  const st = await lstat(p);
  tb.str('(');
  tb.str('type');
  if (st.isSymbolicLink()) {
    tb.str('symlink');
    tb.str('target');
    tb.str(await readlink(p, { encoding: 'buffer' }));
  } else if (st.isFile()) {
    tb.str('regular');
    // Nix marks a file executable when the owner may execute it.
    if ((st.mode & 0o100) !== 0) {
      tb.str('executable');
      tb.str('');
    }
    tb.str('contents');
    yield* dumpContents(p, st.size, tb);
  } else if (st.isDirectory()) {
    tb.str('directory');
    const names = (await readdir(p, { encoding: 'buffer' })).sort(Buffer.compare);
    for (const name of names) {
      tb.str('entry');
      tb.str('(');
      tb.str('name');
      tb.str(name);
      tb.str('node');
      yield* dumpNode(Buffer.concat([p, Buffer.from('/'), name]), tb);
      tb.str(')');
      if (tb.full()) yield tb.take()!;
    }
  } else {
    throw new StoreError(
      'BAD_NAR',
      `cannot archive ${p.toString()}: not a file, directory or link`,
    );
  }
  tb.str(')');
}

async function* dumpContents(p: Buffer, size: number, tb: TokenBuffer): AsyncGenerator<Uint8Array> {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(size));
  tb.raw(len);
  const fh = await open(p, 'r');
  try {
    let left = size;
    while (left > 0) {
      const want = Math.min(left, NAR_READ_CHUNK_BYTES);
      const buf = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, size - left + got);
        if (bytesRead === 0) {
          throw new StoreError('BAD_NAR', `${p.toString()} shrank while it was being archived`);
        }
        got += bytesRead;
      }
      left -= want;
      if (want >= 64 * 1024) {
        const head = tb.take();
        if (head !== undefined) yield head;
        yield buf;
      } else {
        tb.raw(buf);
      }
    }
  } finally {
    await fh.close();
  }
  tb.raw(ZERO8.subarray(0, pad(size)));
  if (tb.full()) yield tb.take()!;
}

/**
 * Writes the NAR's tree at `dest` (which must not exist). Files are 0644 or 0755, directories
 * 0755: making them read-only like /nix/store is the caller's choice.
 */
export async function restoreNar(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  dest: string,
): Promise<void> {
  let fd: number | undefined;
  const at = (p: string) => (p === '' ? dest : join(dest, p));
  const sink: NarSink = {
    directory: (p) => mkdirSync(at(p), { mode: 0o755 }),
    file: (p, exec) => {
      fd = openSync(at(p), 'wx', exec ? 0o755 : 0o644);
    },
    contents: (c) => {
      let off = 0;
      while (off < c.length) off += writeSync(fd!, c, off);
    },
    fileEnd: () => {
      closeSync(fd!);
      fd = undefined;
    },
    symlink: (p, target) => symlinkSync(target, at(p)),
  };
  try {
    await checkNar(chunks, sink);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
