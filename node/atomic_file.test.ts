// writeFileAtomic: a reader sees the old content or the new, never a part; a failed write leaves
// the old content and no temporary file; the mode holds even over a temporary file a crash left;
// fsync syncs the file and its directory, and only when asked.

import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { ATOMIC_TEMP_SUFFIX, writeFileAtomic } from './atomic_file.ts';

const dir = await mkdtemp(join(tmpdir(), 'pcr-atomic-'));
afterAll(() => rm(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

let n = 0;
const fresh = (): string => join(dir, `f${n++}.json`);

describe('writeFileAtomic', () => {
  it('creates and replaces the file, leaving no temporary file', async () => {
    const path = fresh();
    await writeFileAtomic(path, 'old\n');
    await writeFileAtomic(path, new TextEncoder().encode('new\n'));
    expect(await readFile(path, 'utf8')).toBe('new\n');
    expect((await readdir(dir)).filter((f) => f.endsWith(ATOMIC_TEMP_SUFFIX))).toEqual([]);
  });

  it('a reader sees the old content or the new, never a part', async () => {
    const path = fresh();
    const a = 'a'.repeat(1 << 20);
    const b = 'b'.repeat(1 << 20);
    await writeFileAtomic(path, a);
    let writing = true;
    const seen = new Set<string>();
    const reader = (async () => {
      while (writing) {
        const text = await readFile(path, 'utf8');
        seen.add(text === a ? 'a' : text === b ? 'b' : `a part: ${text.length} bytes`);
      }
    })();
    for (let i = 0; i < 40; i++) await writeFileAtomic(path, i % 2 === 0 ? b : a);
    writing = false;
    await reader;
    expect([...seen].filter((s) => s !== 'a' && s !== 'b')).toEqual([]);
  });

  it('a write that fails part way leaves the old content and removes its temporary file', async () => {
    const path = fresh();
    await writeFileAtomic(path, 'old\n');
    // Data that fails after its first chunk is on disk: a write cut short (writeFile takes
    // iterables; the type says string | Uint8Array for the callers).
    function* failing(): Generator<string> {
      yield 'new, the first half';
      throw new Error('cut short');
    }
    for (const fsync of [false, true]) {
      await expect(
        writeFileAtomic(path, failing() as unknown as string, { fsync }),
      ).rejects.toThrow('cut short');
      expect(await readFile(path, 'utf8')).toBe('old\n');
      await expect(stat(`${path}${ATOMIC_TEMP_SUFFIX}`)).rejects.toMatchObject({ code: 'ENOENT' });
    }
  });

  it('a rename that fails leaves the target and removes the temporary file', async () => {
    const path = fresh();
    await mkdir(join(path, 'inside'), { recursive: true }); // a non-empty directory where the file goes
    await expect(writeFileAtomic(path, 'new\n')).rejects.toMatchObject({
      code: expect.stringMatching(/EISDIR|ENOTEMPTY|EEXIST/),
    });
    expect(await readdir(path)).toEqual(['inside']);
    await expect(stat(`${path}${ATOMIC_TEMP_SUFFIX}`)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('gives the file its mode, even over a temporary file a crash left with another', async () => {
    const path = fresh();
    await writeFile(`${path}${ATOMIC_TEMP_SUFFIX}`, 'left by a crash', { mode: 0o644 });
    await writeFileAtomic(path, 'secret\n', { mode: 0o600 });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readFile(path, 'utf8')).toBe('secret\n');
  });

  it('syncs the file and then its directory with fsync, and nothing without', async () => {
    const probe = await open(fresh(), 'w');
    const proto = Object.getPrototypeOf(probe) as { sync(): Promise<void> };
    await probe.close();
    const sync = vi.spyOn(proto, 'sync');
    const path = fresh();
    await writeFileAtomic(path, 'plain\n');
    expect(sync).not.toHaveBeenCalled();
    await writeFileAtomic(path, 'durable\n', { fsync: true, mode: 0o600 });
    expect(sync).toHaveBeenCalledTimes(2);
    expect(await readFile(path, 'utf8')).toBe('durable\n');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });
});
