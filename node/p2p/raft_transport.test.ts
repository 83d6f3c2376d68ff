// Raft over real libp2p connections on loopback: three RaftNodes, each with its own host and its
// own LevelDB, elect a leader and replicate; a raw peer that sends garbage is refused without harm.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { generateKey } from '@libp2p/pnet';
import { lpStream } from '@libp2p/utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, msg, seededRandom } from '../../consensus/index.ts';
import { until } from '../../test/until.ts';
import { encodeMessage } from '../raft/codec.ts';
import { LevelDisk } from '../raft/level_disk.ts';
import { type Outcome, RaftNode } from '../raft/node.ts';
import { DurableStorage } from '../raft/storage.ts';
import { createHost, type Host } from './host.ts';
import { RAFT_PROTOCOL, RaftTransport } from './raft_transport.ts';

interface Member {
  host: Host;
  node: RaftNode;
  transport: RaftTransport;
  disk: LevelDisk;
  ticker: NodeJS.Timeout;
}

const psk = new Uint8Array(95);
generateKey(psk);
const members: Member[] = [];
let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pcr-p2p-'));
  const hosts = await Promise.all(
    [0, 1, 2].map(async () =>
      createHost({
        privateKey: await generateKeyPair('Ed25519'),
        psk,
        listen: ['/ip4/127.0.0.1/tcp/0'],
      }),
    ),
  );
  const ids = hosts.map((h) => h.peerId.toString());
  const addrs = new Map(hosts.map((h) => [h.peerId.toString(), h.getMultiaddrs()]));
  for (const [i, host] of hosts.entries()) {
    const { disk, records } = await LevelDisk.open(join(dir, `n${i}`));
    const storage = DurableStorage.recover(records);
    bootstrap(storage.mem, ids);
    let node: RaftNode | undefined;
    const transport = new RaftTransport({
      host,
      addrsOf: (id) => addrs.get(id) ?? [],
      deliver: (m) => node?.receive(m),
      reportUnreachable: (id) => node?.reportUnreachable(id),
      reportSnapshot: (id, ok) => node?.reportSnapshot(id, ok),
    });
    await transport.start();
    node = new RaftNode({
      id: ids[i]!,
      storage,
      disk,
      transport,
      random: seededRandom(i + 1),
      electionTicks: 10,
    });
    const n = node;
    members.push({ host, node: n, transport, disk, ticker: setInterval(() => n.tick(), 20) });
  }
});

afterAll(async () => {
  for (const m of members) {
    clearInterval(m.ticker);
    m.node.stop();
    await m.transport.close();
    await m.host.stop();
    await m.disk.close();
  }
  await rm(dir, { recursive: true, force: true });
});

const submit = (n: RaftNode, key: string, value: string): Promise<Outcome> =>
  new Promise((r) => n.submit({ op: 'kv.put', key, value }, r));
const read = (n: RaftNode, key: string): Promise<Outcome> =>
  new Promise((r) => n.read({ op: 'kv.get', key }, r));

describe('Raft over libp2p (real TCP, noise, yamux, pnet; LevelDB)', () => {
  it('elects a leader, replicates a write, reads it linearizably on another member', async () => {
    // Every member knows the leader (a follower that has not heard from it yet refuses with NO_LEADER).
    await until(
      () =>
        members.some((m) => m.node.status().state === 'leader') &&
        members.every((m) => m.node.status().lead !== ''),
      10_000,
    );
    const follower = members.find((m) => m.node.status().state !== 'leader')!;
    const other = members.find((m) => m !== follower && m.node.status().state !== 'leader')!;
    const w = await submit(follower.node, 'k', 'v');
    expect(w).toMatchObject({ ok: true, result: { ok: true } });
    const r = await read(other.node, 'k');
    expect(r).toMatchObject({ ok: true, result: { value: 'v' } });
    expect(members.every((m) => m.transport.stats.badFrames === 0)).toBe(true);
  });

  it('refuses garbage, oversized and spoofed frames from a peer with the secret, and keeps serving', async () => {
    const target = members[0]!;
    const rogue = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      psk,
      listen: [],
    });
    try {
      const addr = target.host.getMultiaddrs();
      const frames: Uint8Array[] = [
        new Uint8Array([1, 2, 3, 4]),
        encodeMessage(
          msg({
            type: 'MsgHeartbeat',
            to: target.host.peerId.toString(),
            from: members[1]!.host.peerId.toString(),
            term: 1,
          }),
        ),
      ];
      for (const f of frames) {
        const lp = lpStream(await rogue.dialProtocol(addr, RAFT_PROTOCOL));
        await lp.write(f);
        await new Promise((r) => setTimeout(r, 50)); // one frame per stream, in order
      }
      // A length prefix claiming 1 GiB.
      const s = await rogue.dialProtocol(addr, RAFT_PROTOCOL);
      s.send(new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x04]));
      await until(() => target.transport.stats.badFrames >= 3, 5000);
      expect(target.transport.stats.badFrames).toBe(3);
    } finally {
      await rogue.stop();
    }
    const w = await submit(target.node, 'after', 'ok');
    expect(w).toMatchObject({ ok: true });
  });

  it('a process without the cluster secret cannot connect', async () => {
    const otherKey = new Uint8Array(95);
    generateKey(otherKey);
    const outsider = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      psk: otherKey,
      listen: [],
    });
    try {
      await expect(
        outsider.dialProtocol(members[0]!.host.getMultiaddrs(), RAFT_PROTOCOL, {
          signal: AbortSignal.timeout(3000),
        }),
      ).rejects.toThrow();
    } finally {
      await outsider.stop();
    }
  });

  it('the followers of a leader whose connections close hear of it (peer:disconnect) and elect another', async () => {
    const leader = members.find((m) => m.node.status().state === 'leader')!;
    const followers = members.filter((m) => m !== leader);
    const before = followers.map((m) => m.transport.stats.disconnects);
    // What a dead process's kernel does: every connection of the leader closes.
    clearInterval(leader.ticker);
    leader.node.stop();
    await leader.host.stop();
    await until(
      () => followers.every((m, i) => m.transport.stats.disconnects > before[i]!),
      10_000,
    );
    await until(() => followers.some((m) => m.node.status().state === 'leader'), 10_000);
    const w = await submit(followers[0]!.node, 'after-leader', 'gone');
    expect(w).toMatchObject({ ok: true });
  });
});
