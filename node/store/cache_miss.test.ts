// A cache miss that a member holds: the node fetches the closure and serves it; when the fetch
// fails for a reason that decides nothing (the holder's disk fails mid-read, standing in for a
// holder that went away), Nix gets 502 and can ask again, not a 404 it would remember for an hour;
// data refused (a NAR that does not match its hash) stays a 404. Real hosts, real stores, the real
// HTTP cache; the holder's store is a real local store behind a wrapper that makes its reads fail
// (a test double of a failing disk).

import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loopbackHosts } from '../../test/hosts.ts';
import { fileNar } from '../../test/store/nar_fixtures.ts';
import type { Host } from '../p2p/host.ts';
import { isStoreError, StoreError } from './errors.ts';
import { formatSha256 } from './hash.ts';
import { addPath } from './ingest.ts';
import { generateSecretKey } from './keys.ts';
import { LocalStore } from './local_store.ts';
import { StoreServer } from './protocol.ts';
import { memberFetchFailure, StoreService } from './service.ts';
import type { PathInfo, Store } from './store.ts';
import { parseStorePath } from './store_path.ts';

let dir = '';
let hosts: Host[] = [];
const closers: (() => Promise<unknown>)[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pcr-cache-miss-'));
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await Promise.all(hosts.map((h) => h.stop()));
  hosts = [];
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function pathOf(name: string, contents: string): { info: PathInfo; nar: Buffer } {
  const nar = fileNar(contents);
  const hash = createHash('sha256')
    .update(name)
    .digest('hex')
    .replace(/[eotu]/g, 'a');
  return {
    info: {
      path: `/nix/store/${hash.slice(0, 32)}-${name}`,
      narHash: formatSha256(createHash('sha256').update(nar).digest()),
      narSize: nar.length,
      references: [],
      sigs: [],
    },
    nar,
  };
}

/**
 * A holder of `p` whose NAR reads do what `serve` says at the time: the NAR (undefined), an error
 * (a failing disk), or other bytes (a damaged copy).
 */
async function holder(
  host: Host,
  p: { info: PathInfo; nar: Buffer },
  serve: () => Error | Buffer | undefined,
): Promise<{ haveQueries: number }> {
  const counts = { haveQueries: 0 };
  const store = await LocalStore.open({
    dir: join(dir, `b-${p.info.path.slice(-12)}`),
    maxBytes: 1 << 20,
    fsync: false,
  });
  await addPath(store, p.info, [p.nar]);
  const wrapped = new Proxy(store, {
    get(t, k) {
      // What the server's `have` answers from: one call per holder query.
      if (k === 'byHashParts') {
        return (hashParts: readonly string[]) => {
          counts.haveQueries++;
          return t.byHashParts(hashParts);
        };
      }
      if (k === 'nar') {
        return (path: string, o?: { use?: boolean }) => {
          const what = serve();
          if (what === undefined) return t.nar(path, o);
          return (async function* () {
            if (what instanceof Error) throw what;
            yield what;
          })();
        };
      }
      const v = Reflect.get(t, k, t);
      return typeof v === 'function' ? v.bind(t) : v;
    },
  }) as Store;
  const server = new StoreServer({ host, store: wrapped, key: generateSecretKey('holder-1') });
  await server.start();
  closers.push(() => server.close());
  return counts;
}

/** A member's store service on `host` whose other members are `members` (the first dialed). */
async function asker(
  host: Host,
  members: Host[],
  down: (peer: string) => boolean = () => false,
  logLines?: string[],
): Promise<StoreService> {
  const dataDir = await mkdtemp(join(dir, 'a-'));
  const s = await StoreService.start({
    dataDir,
    host,
    peerId: host.peerId.toString(),
    mode: 'local',
    nixAvailable: false,
    cache: { host: '127.0.0.1', port: 0 },
    peers: () => members.map((m) => m.peerId.toString()),
    addrsOf: (peer) => members.find((m) => m.peerId.toString() === peer)?.getMultiaddrs() ?? [],
    down,
    log:
      logLines === undefined
        ? pino({ level: 'silent' })
        : pino({ level: 'info' }, { write: (line: string) => void logLines.push(line) }),
  });
  closers.push(() => s.close());
  await host.dial(members[0]!.getMultiaddrs());
  return s;
}

describe('a cache miss a member holds', () => {
  it('is fetched and served; a failed fetch is 502, never a 404', { timeout: 60_000 }, async () => {
    hosts = await loopbackHosts(2);
    const [a, b] = hosts as [Host, Host];
    const p = pathOf('miss-served', 'hello');
    let failure: Error | undefined = Object.assign(new Error('EIO: i/o error, read'), {
      code: 'EIO',
    });
    const counts = await holder(b, p, () => failure);
    const s = await asker(a, [b]);
    const url = `${s.cacheUrl}/${parseStorePath(p.info.path).hashPart}.narinfo`;

    const failed = await fetch(url);
    expect(failed.status).toBe(502);
    expect(failed.headers.get('retry-after')).toBe('5');
    expect(await s.store.has([p.info.path])).toEqual(new Set());

    // The holder's disk is back: the next request fetches and serves it.
    failure = undefined;
    const queriesBefore = counts.haveQueries;
    const ok = await fetch(url);
    expect(ok.status).toBe(200);
    // Two holder queries: the miss's (which the closure's infos reuse: three before) and the
    // download's, for the holders of every missing path.
    expect(counts.haveQueries - queriesBefore).toBe(2);
    expect(await ok.text()).toContain(`StorePath: ${p.info.path}`);
  });

  it('data a member holds but that is refused stays a 404', { timeout: 60_000 }, async () => {
    hosts = await loopbackHosts(2);
    const [a, b] = hosts as [Host, Host];
    const p = pathOf('miss-refused', 'world');
    // Bytes of the right length that are not the NAR its narinfo names.
    await holder(b, p, () => pathOf('miss-other', 'WORLD').nar);
    const s = await asker(a, [b]);
    const r = await fetch(`${s.cacheUrl}/${parseStorePath(p.info.path).hashPart}.narinfo`);
    expect(r.status).toBe(404);
    expect(await s.store.has([p.info.path])).toEqual(new Set());
  });
});

describe('a cache miss while a member does not answer', () => {
  it('is a 502 (and a fetch UNAVAILABLE) until the member is marked down, then a 404', {
    timeout: 60_000,
  }, async () => {
    hosts = await loopbackHosts(3);
    const [a, b, c] = hosts as [Host, Host, Host];
    await holder(b, pathOf('miss-held', 'here'), () => undefined);
    const marked = new Set<string>();
    const logLines: string[] = [];
    const s = await asker(a, [b, c], (peer) => marked.has(peer), logLines);
    // c is gone (its process died, its machine is cut off): it may hold the path.
    await c.stop();
    const hashPart = parseStorePath(pathOf('miss-nowhere', 'none').info.path).hashPart;

    const silent = await fetch(`${s.cacheUrl}/${hashPart}.narinfo`);
    expect(silent.status).toBe(502);
    expect(silent.headers.get('retry-after')).toBe('5');
    // The 502's reason, naming the member, is in the node's log.
    const logged = logLines.map((l) => JSON.parse(l) as { msg: string; why?: string });
    expect(logged.find((l) => l.msg === 'cache miss undecided (answered 502)')?.why).toContain(
      `did not answer: ${c.peerId.toString()}`,
    );
    const path = pathOf('miss-nowhere', 'none').info.path;
    expect(await s.where(path)).toEqual({ holders: [], unanswered: [c.peerId.toString()] });
    await expect(s.fetch(path)).rejects.toMatchObject({ code: 'UNAVAILABLE' });

    // The leader marked c down (node-down-after without a Raft answer): a miss no longer waits.
    marked.add(c.peerId.toString());
    expect((await fetch(`${s.cacheUrl}/${hashPart}.narinfo`)).status).toBe(404);
    expect(await s.where(path)).toEqual({ holders: [], unanswered: [] });
    await expect(s.fetch(path)).rejects.toMatchObject({ code: 'NO_HOLDER' });
  });

  it('does not hide a path that a member that answers holds', { timeout: 60_000 }, async () => {
    hosts = await loopbackHosts(3);
    const [a, b, c] = hosts as [Host, Host, Host];
    const p = pathOf('miss-held-too', 'there');
    await holder(b, p, () => undefined);
    const s = await asker(a, [b, c]);
    await c.stop();
    expect(await s.where(p.info.path)).toEqual({
      holders: [b.peerId.toString()],
      unanswered: [c.peerId.toString()],
    });
    const r = await fetch(`${s.cacheUrl}/${parseStorePath(p.info.path).hashPart}.narinfo`);
    expect(r.status).toBe(200);
    expect(await r.text()).toContain(`StorePath: ${p.info.path}`);
  });
});

describe('memberFetchFailure', () => {
  it('keeps refusals and bounds as they are; the rest is UNAVAILABLE', () => {
    const thrown = (e: unknown) => {
      try {
        memberFetchFailure(e);
      } catch (x) {
        return x;
      }
      throw new Error('memberFetchFailure returned');
    };
    for (const code of [
      'HASH_MISMATCH',
      'UNTRUSTED',
      'BAD_SIGNATURE',
      'DAMAGED',
      'TOO_LARGE',
    ] as const) {
      expect(thrown(new StoreError(code, 'x'))).toMatchObject({ code });
    }
    for (const e of [
      new StoreError('PROTOCOL', 'x'),
      new StoreError('NO_HOLDER', 'x'),
      new Error('stream reset'),
    ]) {
      expect(isStoreError(thrown(e), 'UNAVAILABLE')).toBe(true);
    }
  });
});
