// Real node processes (bin/pcr node start) on loopback, each with its own LevelDB: clusters formed
// by seeds only, the pcr client, kill -9 of the leader under load, restart and catch-up by
// snapshot, member removal, refusals (wrong secret, data dir in use, bad frames from a raw peer).

import { cp, lstat, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { generateKey } from '@libp2p/pnet';
import { lpStream } from '@libp2p/utils';
import { multiaddr } from '@multiformats/multiaddr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closeClients,
  kill9,
  type NodeProc,
  pcr,
  request,
  secretFileOf,
  startNode,
  stop,
  until,
} from '../test/procs.ts';
import { API_PROTOCOL } from './api/wire.ts';
import { readSecret } from './identity.ts';
import { createHost } from './p2p/host.ts';
import { RAFT_PROTOCOL } from './p2p/raft_transport.ts';

let base = '';
const procs: NodeProc[] = [];

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'pcr-cluster-'));
});
afterAll(async () => {
  await closeClients();
  for (const p of procs) if (p.child.exitCode === null) await kill9(p).catch(() => {});
  await rm(base, { recursive: true, force: true });
});

async function started(name: string, args: string[] = []): Promise<NodeProc> {
  const p = await startNode(base, name, args);
  procs.push(p);
  return p;
}

async function status(
  p: NodeProc,
  via: NodeProc = p,
): Promise<Record<string, unknown> | undefined> {
  const r = await request(p, via, { op: 'status' }, 3000).catch(() => undefined);
  return r?.ok === true ? r : undefined;
}

function voters(st: Record<string, unknown>): string[] {
  return (st.members as { id: string; role: string }[])
    .filter((m) => m.role === 'voter')
    .map((m) => m.id);
}

describe('a cluster of real node processes', { timeout: 180_000 }, () => {
  let a: NodeProc;
  let b: NodeProc;
  let c: NodeProc;

  it('forms from seeds only; pcr writes on one member and reads on another', async () => {
    a = await started('a', ['--snapshot-entries', '50', '--keep-entries', '5']);
    const join = [
      '--seed',
      '',
      '--secret-file',
      '',
      '--snapshot-entries',
      '50',
      '--keep-entries',
      '5',
    ];
    join[1] = a.addr;
    join[3] = secretFileOf(a);
    [b, c] = await Promise.all([started('b', join), started('c', join)]);
    await until(
      async () => ((await status(a)) && voters((await status(a))!).length === 3) || undefined,
      30_000,
      '3 voters',
    );

    const put = await pcr(['kv', 'put', 'colour', 'blue', '--data-dir', b.dataDir]);
    expect(put.exitCode, put.stderr).toBe(0);
    const get = await pcr(['kv', 'get', 'colour', '--data-dir', c.dataDir]);
    expect(get).toMatchObject({ exitCode: 0, stdout: 'blue' });
    const json = await pcr(['status', '--json', '--data-dir', c.dataDir]);
    expect(JSON.parse(json.stdout)).toMatchObject({ id: c.id, leader: a.id });
    const missing = await pcr(['kv', 'get', 'nope', '--data-dir', c.dataDir]);
    expect(missing.exitCode).toBe(7);
    expect(missing.stderr).toMatch(/NOT_FOUND/);
    const cas = await pcr(['kv', 'cas', 'colour', 'red', 'green', '--data-dir', c.dataDir]);
    expect(cas.exitCode).toBe(1);
    const usage = await pcr(['kv', 'put', 'only-a-key', '--data-dir', c.dataDir]);
    expect(usage.exitCode).toBe(2);
  });

  it('kill -9 of the leader under a write load: a new leader serves writes, no acknowledged write is lost', async () => {
    const acked: string[] = [];
    let stopLoad = false;
    const members = [a, b, c];
    const writer = async (w: number): Promise<void> => {
      for (let i = 0; !stopLoad; i++) {
        const target = members[(w + i) % members.length]!;
        if (target.child.exitCode !== null || target.child.killed) continue;
        const key = `load/${w}/${i}`;
        const r = await request(target, a, { op: 'kv.put', key, value: String(i) }, 3000).catch(
          () => undefined,
        );
        if (r?.ok === true) acked.push(key);
      }
    };
    const load = [0, 1, 2, 3].map(writer);
    await until(() => (acked.length >= 30 ? true : undefined), 20_000, '30 acknowledged writes');
    const leader = (await status(b))!.leader as string;
    const victim = members.find((m) => m.id === leader)!;
    const before = acked.length;
    await kill9(victim);
    const survivors = members.filter((m) => m !== victim);
    await until(
      async () => {
        const st = await status(survivors[0]!, survivors[0]!);
        return st !== undefined && st.leader !== '' && st.leader !== victim.id ? true : undefined;
      },
      15_000,
      'a new leader',
    );
    await until(
      () => (acked.length >= before + 120 ? true : undefined),
      30_000,
      'writes after failover',
    );
    stopLoad = true;
    await Promise.all(load);
    for (const s of survivors) {
      const r = await request(s, s, { op: 'kv.list', prefix: 'load/' });
      expect(r.ok).toBe(true);
      const keys = new Set(
        ((r as unknown as { entries: { key: string }[] }).entries ?? []).map((e) => e.key),
      );
      const lost = acked.filter((k) => !keys.has(k));
      expect(lost, `acknowledged writes missing on ${s.name}`).toEqual([]);
    }
    // The killed node restarts from its data dir and catches up (by snapshot: the log was compacted).
    const back = await startNode(base, victim.name, []);
    procs.push(back);
    Object.assign(victim, back);
    await until(
      async () => {
        const st = await status(back, back);
        return st !== undefined &&
          (st.applied as number) >= ((await status(b, b))?.applied as number) - 5
          ? true
          : undefined;
      },
      30_000,
      'the restarted node to catch up',
    );
    // It came back on a new port (tcp/0): the member table, replicated, carries the new address
    // (the announce path: members could not reach it at the old one).
    await until(
      async () => {
        const st = await status(b, b);
        const rec = (st?.members as { id: string; addrs: string[] }[] | undefined)?.find(
          (m) => m.id === back.id,
        );
        return rec?.addrs.some((x) => back.addr.startsWith(x)) === true ? true : undefined;
      },
      15_000,
      'the new address in the member table',
    );
    const r = await request(back, back, { op: 'kv.list', prefix: 'load/', stale: true });
    const keys = new Set(
      ((r as unknown as { entries: { key: string }[] }).entries ?? []).map((e) => e.key),
    );
    expect(acked.filter((k) => !keys.has(k))).toEqual([]);
    // It was behind the compacted log: it caught up from a snapshot sent by the leader.
    const metrics = await (await fetch(back.metrics)).text();
    expect(metrics).toMatch(/^pcr_raft_snapshots_restored_total [1-9]\d*$/m);
  });

  it('a second process on a data dir in use is refused; so is a client or a node with the wrong secret', async () => {
    const again = await pcr([
      'node',
      'start',
      '--data-dir',
      a.dataDir,
      '--listen',
      '/ip4/127.0.0.1/tcp/0',
    ]);
    expect(again.exitCode).not.toBe(0);
    expect(again.stderr).toMatch(/in use by another process/);

    const wrong = join(base, 'wrong.secret');
    const key = new Uint8Array(95);
    generateKey(key);
    await import('node:fs/promises').then((fs) => fs.writeFile(wrong, key));
    const denied = await pcr([
      'status',
      '--addr',
      b.addr,
      '--secret-file',
      wrong,
      '--timeout',
      '20',
    ]);
    expect(denied.exitCode, denied.stderr).toBe(5);
    expect(denied.stderr).toMatch(/not authorized/);

    const outsider = await started('outsider', ['--seed', b.addr, '--secret-file', wrong]);
    await new Promise((r) => setTimeout(r, 3000));
    const st = (await status(b))!;
    expect((st.members as { id: string }[]).map((m) => m.id)).not.toContain(outsider.id);
    await stop(outsider);
  });

  it("a copy of a running member's data dir is refused: one live process per identity", async () => {
    const copy = join(base, 'copy-of-a');
    // Node's cp cannot copy the local API socket (GNU cp -r does); the daemon replaces it anyway.
    await cp(a.dataDir, copy, {
      recursive: true,
      filter: async (src) => !(await lstat(src)).isSocket(),
    });
    const twin = await pcr(
      ['node', 'start', '--data-dir', copy, '--listen', '/ip4/127.0.0.1/tcp/0'],
      30_000,
    );
    expect(twin.exitCode, twin.stderr).not.toBe(0);
    expect(twin.stderr).toMatch(/another process is already running as this node/);
    expect(twin.stderr).toContain(a.id);
    // The original is untouched: still a voter, and the cluster takes writes through it.
    const st = (await status(a))!;
    expect(voters(st)).toContain(a.id);
    const put = await request(a, a, { op: 'kv.put', key: 'after-twin', value: '1' });
    expect(put.ok).toBe(true);
  });

  it('malformed and oversized frames from a raw libp2p peer are refused without harm', async () => {
    const secret = await readSecret(secretFileOf(a));
    const rogue = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      psk: secret,
      listen: [],
    });
    try {
      const target = multiaddr(c.addr);
      const raft = lpStream(await rogue.dialProtocol(target, RAFT_PROTOCOL));
      await raft.write(new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
      const big = await rogue.dialProtocol(target, RAFT_PROTOCOL);
      big.send(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]));
      const api = await rogue.dialProtocol(target, API_PROTOCOL);
      api.send(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]));
      const apiGarbage = lpStream(await rogue.dialProtocol(target, API_PROTOCOL));
      await apiGarbage.write(new Uint8Array([0xc1]));
      const answer = await apiGarbage.read().catch(() => undefined);
      expect(answer).toBeDefined();
    } finally {
      await rogue.stop();
    }
    await until(
      async () => {
        const m = await (await fetch(c.metrics)).text();
        return /^pcr_transport_bad_frames_total 2$/m.test(m) ? true : undefined;
      },
      5000,
      'two refused raft frames',
    );
    const put = await pcr(['kv', 'put', 'still', 'fine', '--data-dir', c.dataDir]);
    expect(put.exitCode, put.stderr).toBe(0);
  });

  it('SIGTERM of the leader hands leadership over first; a stopped member is removed', async () => {
    const members = [a, b, c];
    const leader = (await status(b))!.leader as string;
    const leaderProc = members.find((m) => m.id === leader)!;
    const rest = members.filter((m) => m !== leaderProc);
    const preElections = async (p: NodeProc): Promise<number> =>
      Number(
        /^pcr_raft_pre_elections_total (\d+)$/m.exec(await (await fetch(p.metrics)).text())![1],
      );
    const before = new Map(
      await Promise.all(rest.map(async (p) => [p.id, await preElections(p)] as const)),
    );
    await stop(leaderProc);
    const st = await until(
      async () => {
        const s = await status(rest[0]!);
        return s !== undefined && s.leader !== '' && s.leader !== leader ? s : undefined;
      },
      10_000,
      'the next leader',
    );
    const next = rest.find((m) => m.id === st.leader)!;
    // A transfer (MsgTimeoutNow) campaigns at once; an election after a timeout would pre-vote first.
    expect(await preElections(next)).toBe(before.get(next.id));

    const removed = await pcr([
      'operator',
      'raft',
      'remove-peer',
      leader,
      '--data-dir',
      next.dataDir,
    ]);
    expect(removed.exitCode, removed.stderr).toBe(0);
    const after = (await status(next))!;
    expect(voters(after).sort()).toEqual(rest.map((m) => m.id).sort());
    const put = await pcr([
      'kv',
      'put',
      'after-removal',
      'ok',
      '--data-dir',
      rest.find((m) => m !== next)!.dataDir,
    ]);
    expect(put.exitCode, put.stderr).toBe(0);
  });
});

describe('a 5-voter cluster of real processes', { timeout: 180_000 }, () => {
  it('forms from one seed; the first five become voters, a sixth stays a learner; writes anywhere', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pcr-cluster5-'));
    const nodes: NodeProc[] = [];
    try {
      const first = await startNode(dir, 'm0', []);
      nodes.push(first);
      const seed = ['--seed', first.addr, '--secret-file', secretFileOf(first)];
      nodes.push(...(await Promise.all([1, 2, 3, 4, 5].map((i) => startNode(dir, `m${i}`, seed)))));
      const st = await until(
        async () => {
          const s = await status(first);
          if (s === undefined) return undefined;
          const ms = s.members as { role: string }[];
          return ms.length === 6 &&
            voters(s).length === 5 &&
            ms.filter((m) => m.role === 'learner').length === 1
            ? s
            : undefined;
        },
        60_000,
        '5 voters and 1 learner',
      );
      expect(voters(st)).toContain(first.id);
      // Any member serves reads and writes, the learner included.
      const learner = nodes.find((n) => !voters(st).includes(n.id))!;
      expect((await pcr(['kv', 'put', 'five', 'ok', '--data-dir', learner.dataDir])).exitCode).toBe(
        0,
      );
      for (const n of nodes) {
        const r = await pcr(['kv', 'get', 'five', '--data-dir', n.dataDir]);
        expect(r, n.name).toMatchObject({ exitCode: 0, stdout: 'ok' });
      }
    } finally {
      for (const n of nodes) await kill9(n).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    }
  });
});
