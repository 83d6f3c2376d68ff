// NAR, Nix's archive format: its tokens and bounds, and a push parser that checks the grammar as
// bytes arrive (for NARs from the network: nothing is trusted until it parsed). Every token is a
// string: a u64 little-endian length, the bytes, zero padding to a multiple of 8. Pure: the
// writer that reads a tree and the restore that writes one are node/store/nar_fs.ts.

import { StoreError } from './errors.ts';

export const NAR_MAGIC = 'nix-archive-1';
/** Directory nesting deeper than this is refused (the parser recurses once per level). */
export const NAR_DEPTH_MAX = 256;
/** An entry name: NAME_MAX on Linux. */
export const NAR_NAME_BYTES_MAX = 255;
/** A symlink target: PATH_MAX on Linux. */
export const NAR_TARGET_BYTES_MAX = 4095;
/** Any other token (magic, parentheses, keywords) is short; a longer one is garbage. */
export const NAR_TOKEN_BYTES_MAX = 64;
/** Entries in one directory. */
export const NAR_DIR_ENTRIES_MAX = 1_000_000;

/** Padding bytes after a token of `n` bytes. */
export function pad(n: number): number {
  return (8 - (n % 8)) % 8;
}

/** One NAR string token (length, bytes, padding). For the writer and for building test NARs. */
export function narString(bytes: Uint8Array | string): Buffer {
  const b = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  const out = Buffer.alloc(8 + b.length + pad(b.length));
  out.writeBigUInt64LE(BigInt(b.length), 0);
  out.set(b, 8);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Parser

/** What a parsed NAR describes, in order. Paths are relative to the root ('' is the root). */
export interface NarSink {
  directory?(path: string): void;
  file?(path: string, executable: boolean, size: number): void;
  contents?(chunk: Uint8Array): void;
  fileEnd?(): void;
  symlink?(path: string, target: string): void;
}

type Request = { kind: 'str'; max: number } | { kind: 'contents'; path: string; exec: boolean };
type Grammar = Generator<Request, void, Buffer>;

function bad(why: string): never {
  throw new StoreError('BAD_NAR', `invalid NAR: ${why}`);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

const STR: Request = { kind: 'str', max: NAR_TOKEN_BYTES_MAX };

function* expect(word: string): Grammar {
  const t: Buffer = yield STR;
  if (t.toString('latin1') !== word) bad(`expected "${word}", got ${show(t)}`);
}

function show(b: Buffer): string {
  return JSON.stringify(b.subarray(0, 40).toString('latin1'));
}

function* grammar(sink: NarSink): Grammar {
  yield* expect(NAR_MAGIC);
  yield* node('', 0, sink);
}

function* node(path: string, depth: number, sink: NarSink): Grammar {
  if (depth > NAR_DEPTH_MAX) bad(`directories nested deeper than ${NAR_DEPTH_MAX}`);
  yield* expect('(');
  yield* expect('type');
  const type = (yield STR).toString('latin1');
  if (type === 'regular') {
    let t = (yield STR).toString('latin1');
    let exec = false;
    if (t === 'executable') {
      if ((yield STR).length !== 0) bad(`"executable" must be followed by "" at ${where(path)}`);
      exec = true;
      t = (yield STR).toString('latin1');
    }
    if (t !== 'contents') bad(`expected "contents" at ${where(path)}`);
    yield { kind: 'contents', path, exec };
  } else if (type === 'symlink') {
    yield* expect('target');
    const target = yield { kind: 'str', max: NAR_TARGET_BYTES_MAX };
    if (target.length === 0) bad(`empty symlink target at ${where(path)}`);
    if (target.includes(0)) bad(`NUL in symlink target at ${where(path)}`);
    sink.symlink?.(path, decode(target, path));
  } else if (type === 'directory') {
    sink.directory?.(path);
    let prev: Buffer | undefined;
    for (let n = 0; ; n++) {
      const t = (yield STR).toString('latin1');
      if (t === ')') return;
      if (t !== 'entry') bad(`expected "entry" or ")" in directory ${where(path)}`);
      if (n >= NAR_DIR_ENTRIES_MAX)
        bad(`more than ${NAR_DIR_ENTRIES_MAX} entries in ${where(path)}`);
      yield* expect('(');
      yield* expect('name');
      const name = yield { kind: 'str', max: NAR_NAME_BYTES_MAX };
      checkName(name, path);
      if (prev !== undefined) {
        const c = Buffer.compare(prev, name);
        if (c === 0) bad(`duplicate entry ${show(name)} in ${where(path)}`);
        if (c > 0) bad(`entries not sorted: ${show(name)} after ${show(prev)} in ${where(path)}`);
      }
      prev = name;
      yield* expect('node');
      const child = path === '' ? decode(name, path) : `${path}/${decode(name, path)}`;
      yield* node(child, depth + 1, sink);
      yield* expect(')');
    }
  } else {
    bad(`unknown node type ${JSON.stringify(type)} at ${where(path)}`);
  }
  yield* expect(')');
}

function where(path: string): string {
  return path === '' ? 'the root' : JSON.stringify(path);
}

function checkName(name: Buffer, dir: string): void {
  if (name.length === 0) bad(`empty entry name in ${where(dir)}`);
  if (name.includes(0)) bad(`NUL in an entry name in ${where(dir)}`);
  if (name.includes(0x2f)) bad(`"/" in entry name ${show(name)} in ${where(dir)}`);
  const s = name.toString('latin1');
  if (s === '.' || s === '..') bad(`entry name ${JSON.stringify(s)} in ${where(dir)}`);
}

function decode(b: Buffer, at: string): string {
  try {
    return utf8.decode(b);
  } catch {
    return bad(`name or target that is not UTF-8 at ${where(at)}`);
  }
}

/**
 * Checks a NAR's grammar as its bytes arrive (`push`), reporting what it holds to a sink. Refuses
 * bad entry names, unsorted or duplicate entries, absurd lengths, nesting past NAR_DEPTH_MAX,
 * trailing bytes, and (at `end`) a truncated stream. `limitBytes` is the size the NAR claims
 * (narinfo NarSize): a length field that reaches past it is refused before anything is buffered.
 */
export class NarParser {
  private readonly g: Grammar;
  private readonly sink: NarSink;
  private readonly limitBytes: number;
  private req: Request | undefined;
  private phase: 'len' | 'body' | 'pad' | 'done' = 'len';
  private lenBuf = Buffer.alloc(8);
  private lenHave = 0;
  private left = 0;
  private padLeft = 0;
  private strBuf: Buffer = Buffer.alloc(0);
  private strHave = 0;
  private consumed = 0;
  private tokenLen = 0;

  constructor(sink: NarSink = {}, limitBytes = Number.MAX_SAFE_INTEGER) {
    this.sink = sink;
    this.limitBytes = limitBytes;
    this.g = grammar(sink);
    this.req = this.g.next().value as Request;
  }

  get bytes(): number {
    return this.consumed;
  }

  push(chunk: Uint8Array): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.phase === 'done') bad('trailing bytes after the end of the archive');
      if (this.phase === 'len') {
        const k = Math.min(8 - this.lenHave, n - i);
        this.lenBuf.set(chunk.subarray(i, i + k), this.lenHave);
        this.lenHave += k;
        i += k;
        this.consumed += k;
        if (this.lenHave === 8) this.startBody();
      } else if (this.phase === 'body') {
        const k = Math.min(this.left, n - i);
        const part = chunk.subarray(i, i + k);
        if (this.req!.kind === 'contents') {
          if (k > 0) this.sink.contents?.(part);
        } else {
          this.strBuf.set(part, this.strHave);
          this.strHave += k;
        }
        this.left -= k;
        i += k;
        this.consumed += k;
        if (this.left === 0) this.startPad();
      } else {
        const k = Math.min(this.padLeft, n - i);
        for (let j = i; j < i + k; j++) if (chunk[j] !== 0) bad('non-zero padding');
        this.padLeft -= k;
        i += k;
        this.consumed += k;
        if (this.padLeft === 0) this.finishToken();
      }
    }
  }

  private startBody(): void {
    this.lenHave = 0;
    const hi = this.lenBuf.readUInt32LE(4);
    const len = hi * 2 ** 32 + this.lenBuf.readUInt32LE(0);
    const req = this.req!;
    if (hi >= 2 ** 21) bad(`absurd length field ${this.lenBuf.readBigUInt64LE(0)}`);
    if (len > this.limitBytes - this.consumed) {
      bad(`length field ${len} reaches past the NAR's declared size ${this.limitBytes}`);
    }
    if (req.kind === 'str' && len > req.max) {
      bad(`a ${len}-byte token where at most ${req.max} bytes belong`);
    }
    if (req.kind === 'contents') {
      this.sink.file?.(req.path, req.exec, len);
    } else {
      this.strBuf = Buffer.alloc(len);
      this.strHave = 0;
    }
    this.left = len;
    this.tokenLen = len;
    if (len === 0) this.startPad();
    else this.phase = 'body';
  }

  private startPad(): void {
    this.padLeft = pad(this.tokenLen);
    if (this.padLeft === 0) this.finishToken();
    else this.phase = 'pad';
  }

  private finishToken(): void {
    const req = this.req!;
    let r: IteratorResult<Request, void>;
    if (req.kind === 'contents') {
      this.sink.fileEnd?.();
      r = this.g.next(Buffer.alloc(0));
    } else {
      r = this.g.next(this.strBuf);
    }
    if (r.done === true) {
      this.phase = 'done';
      this.req = undefined;
    } else {
      this.req = r.value;
      this.phase = 'len';
    }
  }

  /** Call after the last chunk: refuses a truncated archive. */
  end(): void {
    if (this.phase !== 'done') bad(`truncated archive (ended after ${this.consumed} bytes)`);
  }
}

/** Parses a whole NAR from chunks; returns its byte count. */
export async function checkNar(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  sink?: NarSink,
): Promise<number> {
  const p = new NarParser(sink);
  for await (const c of chunks) p.push(c);
  p.end();
  return p.bytes;
}
