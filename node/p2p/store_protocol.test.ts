// /pcr/store/1.0.0 between two real libp2p hosts: a 16 MiB NAR reaches a reader slower than the
// network without its stream being reset (the credit window holds the sender back; without it
// the 4 MiB read buffer overflows), queries answer, and malformed requests get a PROTOCOL error.

import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { generateKey } from '@libp2p/pnet';
import { lpStream } from '@libp2p/utils';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatSha256 } from '../store/hash.ts';
import { generateSecretKey } from '../store/keys.ts';
import { LocalStore } from '../store/local_store.ts';
import { narString } from '../store/nar.ts';
import { addPath, type PathInfo } from '../store/store.ts';
import { createHost, type Host } from './host.ts';
import { HAVE_QUERY_MAX, STORE_PROTOCOL, StoreClient, StoreServer } from './store_protocol.ts';

const psk = new Uint8Array(95);
generateKey(psk);
let dir = '';
let a: Host;
let b: Host;
let server: StoreServer;
let client: StoreClient;
let big: PathInfo;
let bigNar: Buffer;
const packr = new Packr({ useRecords: false, mapsAsObjects: true });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pcr-store-proto-'));
  [a, b] = await Promise.all(
    [0, 1].map(async () =>
      createHost({
        privateKey: await generateKeyPair('Ed25519'),
        psk,
        listen: ['/ip4/127.0.0.1/tcp/0'],
      }),
    ),
  );
  const store = await LocalStore.open({ dir: join(dir, 'a'), maxBytes: 1 << 30, fsync: false });
  const contents = Buffer.alloc(16 * 1024 * 1024, 7);
  bigNar = Buffer.concat([
    ...['nix-archive-1', '(', 'type', 'regular', 'contents'].map((t) => narString(t)),
    narString(contents),
    narString(')'),
  ]);
  big = {
    path: `/nix/store/${'3'.repeat(32)}-big`,
    narHash: formatSha256(createHash('sha256').update(bigNar).digest()),
    narSize: bigNar.length,
    references: [],
    sigs: [],
  };
  await addPath(store, big, [bigNar]);
  server = new StoreServer({ host: a, store, key: generateSecretKey('a-1') });
  await server.start();
  client = new StoreClient({ host: b, addrsOf: () => a.getMultiaddrs() });
});

afterAll(async () => {
  await server.close();
  await a.stop();
  await b.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('/pcr/store/1.0.0', () => {
  it('streams a 16 MiB NAR to a slow reader under the credit window', async () => {
    const parts: Uint8Array[] = [];
    let finished = false;
    const failed = await client.nars(a.peerId.toString(), [big], async () => ({
      write: async (c) => {
        parts.push(Uint8Array.from(c));
        await new Promise((r) => setTimeout(r, 5));
      },
      finish: async () => {
        finished = true;
      },
      abort: async () => {},
    }));
    expect([...failed.keys()]).toEqual([]);
    expect(finished).toBe(true);
    expect(Buffer.compare(Buffer.concat(parts), bigNar)).toBe(0);
  });

  it('answers have, closure (signed by the server) and key; NOT_FOUND per path in nars', async () => {
    const peer = a.peerId.toString();
    const absent = '4'.repeat(32);
    expect(await client.have(peer, [big.path.slice(11, 43), absent, 'not-a-hash'])).toEqual([
      big.path,
    ]);
    const [info] = await client.closure(peer, [big.path]);
    expect(info!.sigs.some((s) => s.startsWith('a-1:'))).toBe(true);
    expect(await client.key(peer)).toMatch(/^a-1:/);
    const missing = { ...big, path: `/nix/store/${absent}-gone` };
    const failed = await client.nars(peer, [missing], async () => {
      throw new Error('not called');
    });
    expect(failed.get(missing.path)).toMatchObject({ code: 'NOT_FOUND' });
    await expect(client.closure(peer, [missing.path])).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('refuses malformed and oversized requests with a PROTOCOL error', async () => {
    const ask = async (req: unknown) => {
      const stream = await b.dialProtocol(a.getMultiaddrs(), STORE_PROTOCOL);
      const lp = lpStream(stream);
      await lp.write(packr.pack(req));
      const answer = packr.unpack((await lp.read()).subarray()) as {
        error?: { code: string; message: string };
      };
      await stream.close().catch(() => {});
      return answer.error;
    };
    expect(await ask({ op: 'format-disk' })).toMatchObject({
      code: 'PROTOCOL',
      message: expect.stringMatching(/unknown op/),
    });
    expect(await ask({ op: 'have', hashParts: 'x' })).toMatchObject({ code: 'PROTOCOL' });
    expect(await ask({ op: 'have', hashParts: Array(HAVE_QUERY_MAX + 1).fill('x') })).toMatchObject(
      { code: 'PROTOCOL', message: expect.stringMatching(/at most 10000/) },
    );
    expect(await ask({ op: 'nars', paths: [big.path], window: 10 })).toMatchObject({
      code: 'PROTOCOL',
      message: expect.stringMatching(/window/),
    });
    expect(await ask({ op: 'closure', paths: ['/etc/passwd'] })).toMatchObject({
      code: 'BAD_STORE_PATH',
    });
  });
});
