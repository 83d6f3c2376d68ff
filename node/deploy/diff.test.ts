// The closure diff's rules on made-up path infos: Nix's name split, the 8 KiB threshold at its
// edge, the KiB rounding, the closure walk and its bound. diff.nix.test.ts holds the same code to
// Nix's own output on real closures.
import { describe, expect, it } from 'vitest';
import {
  CLOSURE_PATHS_MAX,
  ClosureError,
  type ClosurePathInfo,
  closureOf,
  diffClosures,
  formatClosureDiff,
  formatKiB,
  parseDrvName,
  SIZE_DELTA_SHOWN_BYTES_MIN,
  splitStoreName,
} from './diff.ts';

const H = 'a'.repeat(32);
const p = (name: string, hash = H): string => `/nix/store/${hash}-${name}`;
const info = (
  name: string,
  narSize: number,
  references: string[] = [],
  hash = H,
): ClosurePathInfo => ({
  path: p(name, hash),
  narSize,
  references,
});

describe('names, as Nix splits them', () => {
  it('splits at the first dash not followed by a letter (builtins.parseDrvName)', () => {
    expect(parseDrvName('apache-httpd-2.0.48')).toEqual({
      name: 'apache-httpd',
      version: '2.0.48',
    });
    expect(parseDrvName('gcc-1-2')).toEqual({ name: 'gcc', version: '1-2' });
    expect(parseDrvName('bash--1-2')).toEqual({ name: 'bash', version: '-1-2' });
    expect(parseDrvName('xvidtune-?1-2')).toEqual({ name: 'xvidtune', version: '?1-2' });
    expect(parseDrvName('hello')).toEqual({ name: 'hello', version: '' });
    expect(parseDrvName('hello-')).toEqual({ name: 'hello-', version: '' });
  });

  it('drops an output suffix first: -bin, -dev, -lib64, any -letters', () => {
    expect(splitStoreName(p('openssl-3.0.1-bin'))).toEqual({
      name: 'openssl',
      version: '3.0.1',
      output: 'bin',
    });
    expect(splitStoreName(p('glibc-2.35-lib64'))).toEqual({
      name: 'glibc',
      version: '2.35',
      output: 'lib64',
    });
    // Nix's own ambiguity: a name ending in -letters loses them.
    expect(splitStoreName(p('hello-world'))).toEqual({
      name: 'hello',
      version: '',
      output: 'world',
    });
    expect(splitStoreName(p('libfoo-2.1'))).toEqual({ name: 'libfoo', version: '2.1', output: '' });
    expect(() => splitStoreName('/tmp/x')).toThrow(ClosureError);
  });
});

describe('diffClosures', () => {
  it('reports version changes, added and removed packages, ε and ∅, in byte order', () => {
    const before = [info('hello-1.0', 100), info('data', 8), info('gone-3.0', 8), info('Zed-1', 8)];
    const after = [
      info('hello-1.1', 100, [], 'b'.repeat(32)),
      info('data-2', 8),
      info('fresh-0.1', 8),
      info('Zed-1', 8),
    ];
    const d = diffClosures(before, after);
    expect(formatClosureDiff(d)).toEqual([
      'data: ε → 2',
      'fresh: ∅ → 0.1',
      'gone: 3.0 → ∅',
      'hello: 1.0 → 1.1',
    ]);
    expect(d.differs).toBe(true);
  });

  it('shows a size change of exactly 8 KiB, not one a byte smaller', () => {
    const at = (delta: number) =>
      diffClosures([info('lib-1', 10_000)], [info('lib-1', 10_000 + delta, [], 'b'.repeat(32))]);
    expect(formatClosureDiff(at(SIZE_DELTA_SHOWN_BYTES_MIN))).toEqual(['lib: +8.0 KiB']);
    expect(formatClosureDiff(at(-SIZE_DELTA_SHOWN_BYTES_MIN))).toEqual(['lib: -8.0 KiB']);
    const under = at(SIZE_DELTA_SHOWN_BYTES_MIN - 1);
    expect(formatClosureDiff(under)).toEqual([]);
    // Not a package line, but the closures still differ (a rebuild).
    expect(under.differs).toBe(true);
  });

  it('sums every path of a package (two versions, outputs) before comparing', () => {
    const before = [info('libm-1.0', 4096), info('libm-1.1', 4096), info('libm-1.1-dev', 4096)];
    const after = [info('libm-1.1', 4096), info('libm-1.1-dev', 4096)];
    expect(formatClosureDiff(diffClosures(before, after))).toEqual(['libm: 1.0 → ∅']);
    const after2 = [info('libm-1.1', 4096)];
    expect(formatClosureDiff(diffClosures(before, after2))).toEqual(['libm: 1.0 → ∅, -8.0 KiB']);
  });

  it('is empty for the same closure, and counts paths and bytes', () => {
    const c = [info('a-1', 10), info('b-2', 20)];
    const d = diffClosures(c, c);
    expect(d).toMatchObject({ changes: [], differs: false, pathsBefore: 2, bytesAfter: 30 });
  });

  it('refuses a size that is not one', () => {
    expect(() => diffClosures([info('a-1', -1)], [])).toThrow(/not a size/);
  });
});

describe('formatKiB (C printf %+.1f of bytes / 1024)', () => {
  it('rounds exact halves to even, in integers', () => {
    expect(formatKiB(8448)).toBe('+8.2 KiB'); // 8.25
    expect(formatKiB(8550)).toBe('+8.3 KiB'); // 8.349...
    expect(formatKiB(8550 + 51)).toBe('+8.4 KiB'); // 8.399...
    expect(formatKiB(-8448)).toBe('-8.2 KiB');
    expect(formatKiB(8192 + 358)).toBe('+8.3 KiB'); // 8.3496...
    expect(formatKiB(9472)).toBe('+9.2 KiB'); // 9.25 tie: even 2
    expect(formatKiB(9728)).toBe('+9.5 KiB');
    expect(formatKiB(20000)).toBe('+19.5 KiB');
    expect(formatKiB(2 ** 40)).toBe('+1073741824.0 KiB');
  });
});

describe('closureOf', () => {
  it('walks references, self-references included, once each', () => {
    const a = info('a-1', 1, [p('b-1'), p('a-1')]);
    const b = info('b-1', 1, [p('c-1')]);
    const c = info('c-1', 1, []);
    const infos = new Map([a, b, c, info('other-1', 1)].map((i) => [i.path, i]));
    expect(
      closureOf([a.path], infos)
        .map((i) => i.path)
        .sort(),
    ).toEqual([a.path, b.path, c.path].sort());
  });

  it('refuses a reference without an info', () => {
    const a = info('a-1', 1, [p('b-1')]);
    expect(() => closureOf([a.path], new Map([[a.path, a]]))).toThrow(/no path info for .*b-1/);
  });

  it('takes CLOSURE_PATHS_MAX paths and refuses one more', () => {
    const hash = (i: number) => i.toString(32).padStart(32, '0');
    const make = (n: number) => {
      const leaves = Array.from({ length: n - 1 }, (_, i) => info(`x-${i}`, 1, [], hash(i)));
      const root = info(
        'root-1',
        1,
        leaves.map((l) => l.path),
        'z'.repeat(32),
      );
      return { root, infos: new Map([root, ...leaves].map((i) => [i.path, i])) };
    };
    const ok = make(CLOSURE_PATHS_MAX);
    expect(closureOf([ok.root.path], ok.infos)).toHaveLength(CLOSURE_PATHS_MAX);
    const over = make(CLOSURE_PATHS_MAX + 1);
    expect(() => closureOf([over.root.path], over.infos)).toThrow(/CLOSURE_PATHS_MAX/);
    const list = [...over.infos.values()];
    expect(() => diffClosures(list, [])).toThrow(/CLOSURE_PATHS_MAX/);
  });
});
