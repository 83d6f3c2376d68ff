// The node's key and the cluster secret are created whole or not at all, never replaced, and a
// damaged key is named with what to do instead of failing in the protobuf decoder.

import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ATOMIC_TEMP_SUFFIX, createFileAtomic } from './atomic_file.ts';
import {
  CLUSTER_SECRET_FILE,
  IdentityError,
  loadOrCreatePeerKey,
  loadOrCreateSecret,
  PEER_KEY_FILE,
} from './identity.ts';

const root = await mkdtemp(join(tmpdir(), 'pcr-identity-'));
afterAll(() => rm(root, { recursive: true, force: true }));
let n = 0;
const fresh = async (): Promise<string> => {
  const d = join(root, `d${n++}`);
  await mkdir(d);
  return d;
};

describe('createFileAtomic', () => {
  it('creates the file with its mode and leaves no temporary file', async () => {
    const d = await fresh();
    await createFileAtomic(join(d, 'k'), 'key\n', { mode: 0o600 });
    expect(await readFile(join(d, 'k'), 'utf8')).toBe('key\n');
    expect((await stat(join(d, 'k'))).mode & 0o777).toBe(0o600);
    expect(await readdir(d)).toEqual(['k']);
  });

  it('never replaces an existing file (EEXIST, the old content kept)', async () => {
    const d = await fresh();
    await writeFile(join(d, 'k'), 'old\n');
    await expect(createFileAtomic(join(d, 'k'), 'new\n')).rejects.toMatchObject({ code: 'EEXIST' });
    expect(await readFile(join(d, 'k'), 'utf8')).toBe('old\n');
    expect(await readdir(d)).toEqual(['k']);
  });

  it('a write cut short leaves no file at all', async () => {
    const d = await fresh();
    function* failing(): Generator<string> {
      yield 'the first half of a key';
      throw new Error('cut short');
    }
    await expect(createFileAtomic(join(d, 'k'), failing() as unknown as string)).rejects.toThrow(
      'cut short',
    );
    expect(await readdir(d)).toEqual([]);
  });
});

describe('the node key and the cluster secret', () => {
  it('a temporary file a crash left does not stop them being created, and is gone after', async () => {
    const d = await fresh();
    await writeFile(join(d, `${PEER_KEY_FILE}${ATOMIC_TEMP_SUFFIX}`), 'half a key');
    await writeFile(join(d, `${CLUSTER_SECRET_FILE}${ATOMIC_TEMP_SUFFIX}`), 'half a secret');
    const key = await loadOrCreatePeerKey(d);
    await loadOrCreateSecret(d, undefined, true);
    expect((await readdir(d)).sort()).toEqual([CLUSTER_SECRET_FILE, PEER_KEY_FILE].sort());
    // Read again: the same key.
    expect((await loadOrCreatePeerKey(d)).equals(key)).toBe(true);
  });

  it('a damaged key is refused with its path and what to do', async () => {
    const d = await fresh();
    await writeFile(join(d, PEER_KEY_FILE), Buffer.from([0x08, 0x01, 0x12]));
    const e = await loadOrCreatePeerKey(d).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(IdentityError);
    expect((e as Error).message).toContain(join(d, PEER_KEY_FILE));
    expect((e as Error).message).toContain('--rejoin');
  });
});
