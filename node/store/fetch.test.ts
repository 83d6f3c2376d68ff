// fetchClosure's bounds against a scripted client (no network): the streams it opens at once
// never exceed FETCH_PARALLEL_MAX, and a failing path is tried on at most FETCH_ATTEMPTS_MAX
// holders, whatever the caller asks for.

import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreError } from './errors.ts';
import { FETCH_ATTEMPTS_MAX, FETCH_PARALLEL_MAX, fetchClosure } from './fetch.ts';
import { formatSha256 } from './hash.ts';
import { generateSecretKey, TrustPolicy, withSignature } from './keys.ts';
import { LocalStore } from './local_store.ts';
import { narString as s } from './nar.ts';
import type { NarSinkAsync, StoreClient } from './protocol.ts';
import type { PathInfo } from './store.ts';
import { parseStorePath } from './store_path.ts';

const key = generateSecretKey('fetch-test-1');

const NIX32 = '0123456789abcdfghijklmnpqrsvwxyz';

/** A store path whose hash part is `i` in nix32 digits. */
function pathOf(i: number, name: string): string {
  let h = '';
  for (let n = i; n > 0; n = Math.floor(n / 32)) h = NIX32[n % 32] + h;
  return `/nix/store/${h.padStart(32, '0')}-${name}`;
}

function leafNar(text: string): Buffer {
  return Buffer.concat(
    ['nix-archive-1', '(', 'type', 'regular', 'contents', text, ')'].map((t) => s(t)),
  );
}

/** A root referring to `leaves` small paths, signed; with each path's NAR. */
function closure(leaves: number): { root: string; infos: PathInfo[]; nars: Map<string, Buffer> } {
  const nars = new Map<string, Buffer>();
  const infos: PathInfo[] = [];
  const make = (path: string, references: string[]) => {
    const nar = leafNar(path);
    nars.set(path, nar);
    const info = {
      path,
      narHash: formatSha256(createHash('sha256').update(nar).digest()),
      narSize: nar.length,
      references,
      sigs: [],
    };
    infos.push(withSignature(key, info));
  };
  const leafPaths = Array.from({ length: leaves }, (_, i) => pathOf(i + 1, `leaf-${i}`));
  for (const p of leafPaths) make(p, []);
  const root = pathOf(100_000, 'root');
  make(root, leafPaths);
  return { root, infos, nars };
}

/** A client that serves `infos` from every one of `peers`, with `nars` scripted by the test. */
function scriptedClient(infos: readonly PathInfo[], nars: StoreClient['nars']): StoreClient {
  const byHash = new Map(infos.map((i) => [parseStorePath(i.path).hashPart, i.path]));
  return {
    key: async () => {
      throw new Error('no peer keys here');
    },
    have: async (_peer: string, hashParts: readonly string[]) =>
      hashParts.flatMap((h) => (byHash.has(h) ? [byHash.get(h)!] : [])),
    closure: async () => [...infos],
    nars,
  } as unknown as StoreClient;
}

let dir = '';
let store: LocalStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pcr-fetch-'));
  store = await LocalStore.open({ dir, maxBytes: 1 << 30, fsync: false });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('fetchClosure bounds', () => {
  it(`opens at most FETCH_PARALLEL_MAX (${FETCH_PARALLEL_MAX}) NAR streams at once`, async () => {
    const { root, infos, nars } = closure(256);
    let open = 0;
    let openMax = 0;
    const client = scriptedClient(infos, async (_peer, batch, start) => {
      open++;
      openMax = Math.max(openMax, open);
      await new Promise((r) => setTimeout(r, 30));
      for (const info of batch) {
        const sink: NarSinkAsync = await start(info);
        await sink.write(nars.get(info.path)!);
        await sink.finish();
      }
      open--;
      return new Map();
    });
    const report = await fetchClosure([root], {
      store,
      client,
      peers: () => ['p1'],
      trust: new TrustPolicy([key.publicKey]),
      trustPeers: false,
      parallel: 1_000,
      fsync: false,
    });
    expect(report.fetched).toBe(257);
    // 257 small paths over 16 streams make 16 batches: all of them run at once, and no more.
    expect(openMax).toBe(FETCH_PARALLEL_MAX);
  });

  it(`tries a failing path on at most FETCH_ATTEMPTS_MAX (${FETCH_ATTEMPTS_MAX}) holders`, async () => {
    const { root, infos } = closure(0);
    const peers = Array.from({ length: 10 }, (_, i) => `p${i}`);
    const asked: string[] = [];
    const client = scriptedClient(infos, async (peer, batch) => {
      asked.push(peer);
      return new Map(
        batch.map((i) => [i.path, new StoreError('HASH_MISMATCH', `bad from ${peer}`)]),
      );
    });
    const err = await fetchClosure([root], {
      store,
      client,
      peers: () => peers,
      trust: new TrustPolicy([key.publicKey]),
      trustPeers: false,
      attempts: 100,
      fsync: false,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'HASH_MISMATCH',
      message: expect.stringMatching(/tried 4 holders/),
    });
    expect(asked).toHaveLength(FETCH_ATTEMPTS_MAX);
    expect(new Set(asked).size).toBe(FETCH_ATTEMPTS_MAX);
    expect((await store.has([root])).size).toBe(0);
  });
});
