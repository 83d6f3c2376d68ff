// Daemons in one process, over real libp2p on loopback and real LevelDB: bootstrap by the first,
// join through a seed, promotion of learners, API reads and writes on different members.
// (Separate-process tests with kill -9 drive bin/pcr: node/cluster.test.ts.)

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { until } from '../test/until.ts';
import { ApiClient } from './api/client.ts';
import { Daemon } from './daemon.ts';
import { JOIN_SEEDS_FILE } from './data_dir_files.ts';
import { CLUSTER_SECRET_FILE, readSecret } from './identity.ts';
import { DataDirLockedError } from './raft/level_disk.ts';

const logger = pino({ level: process.env.PCR_LOG_LEVEL ?? 'silent' });
const daemons: Daemon[] = [];
const dirs: string[] = [];

afterAll(async () => {
  for (const d of daemons) await d.stop().catch(() => {});
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('Daemon (in one process)', () => {
  it('bootstraps, lets two nodes join by seed, promotes them, serves the API on any member', async () => {
    const base = await mkdtemp(join(tmpdir(), 'pcr-daemon-'));
    dirs.push(base);
    const a = await Daemon.start({
      dataDir: join(base, 'a'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      logger,
      accel: 'tcg',
    });
    daemons.push(a);
    await until(() => a.node.status().state === 'leader', 5000);
    const secretFile = join(base, 'a', CLUSTER_SECRET_FILE);
    const seed = a.addrs()[0]!;
    for (const name of ['b', 'c']) {
      daemons.push(
        await Daemon.start({
          dataDir: join(base, name),
          listen: ['/ip4/127.0.0.1/tcp/0'],
          seeds: [seed],
          secretFile,
          logger,
          accel: 'tcg',
        }),
      );
    }
    await until(() => a.node.status().config.voters.length === 3, 15_000);

    const secret = await readSecret(secretFile);
    const cb = await ApiClient.connect(daemons[1]!.addrs()[0]!, secret);
    const cc = await ApiClient.connect(daemons[2]!.addrs()[0]!, secret);
    try {
      expect(await cb.request({ op: 'kv.put', key: 'greeting', value: 'hello' })).toMatchObject({
        ok: true,
      });
      expect(await cc.request({ op: 'kv.get', key: 'greeting' })).toMatchObject({
        ok: true,
        value: 'hello',
      });
      expect(
        await cc.request({ op: 'kv.cas', key: 'greeting', from: 'nope', to: 'x' }),
      ).toMatchObject({
        ok: false,
        error: { code: 'CAS_MISMATCH' },
      });
      expect(await cc.request({ op: 'kv.get', key: 'missing' })).toMatchObject({
        ok: false,
        error: { code: 'NOT_FOUND' },
      });
      expect(await cc.request({ op: 'nope' })).toMatchObject({
        ok: false,
        error: { code: 'INVALID' },
      });
      const st = await cb.request({ op: 'status' });
      expect(st).toMatchObject({ ok: true, leader: a.id });
      await until(async () => {
        const r = (await cc.request({ op: 'nodes' })) as unknown as { nodes: { health: string }[] };
        return r.nodes.length === 3 && r.nodes.every((n) => n.health === 'alive');
      }, 10_000);
      const metrics = await (await fetch(a.metricsUrl)).text();
      expect(metrics).toMatch(/^pcr_raft_is_leader 1$/m);
      expect(metrics).toMatch(/^pcr_raft_voters 3$/m);
      expect(metrics).toMatch(/^pcr_apply_latency_seconds_count \d+$/m);
      const members = (st as unknown as { members: { role: string; addrs: string[] }[] }).members;
      expect(members.map((m) => m.role)).toEqual(['voter', 'voter', 'voter']);
      expect(members.every((m) => m.addrs.length > 0)).toBe(true);
    } finally {
      await cb.close();
      await cc.close();
    }
  });

  it('members redial a member they lost their connection to, even without Raft traffic', async () => {
    // b and c are followers: Raft sends nothing between them, so only keepConnected redials.
    const [a, b, c] = daemons as [Daemon, Daemon, Daemon];
    expect(a.node.status().state).toBe('leader');
    await until(() => b.host.getConnections(c.host.peerId).length > 0, 10_000, 'b-c connected');
    const before = b.stats.memberRedials + c.stats.memberRedials;
    await b.host.hangUp(c.host.peerId);
    expect(b.host.getConnections(c.host.peerId)).toEqual([]);
    await until(
      () => b.host.getConnections(c.host.peerId).length > 0,
      10_000,
      'b and c connected again',
    );
    expect(b.stats.memberRedials + c.stats.memberRedials).toBeGreaterThan(before);
  });

  it('commits VM specs through any member: refused specs name the field; stop, list, rm', async () => {
    const [a, b] = daemons as [Daemon, Daemon];
    const secret = await readSecret(join(dirs[0]!, 'a', CLUSTER_SECRET_FILE));
    const cb = await ApiClient.connect(b.addrs()[0]!, secret);
    try {
      const runner = '/nix/store/0c6lw3rq0qvd4n4ys4fvnnbd5bxxc0nk-microvm-run-db';
      const bad = await cb.request({
        op: 'vm.run',
        node: a.id,
        spec: { version: 1, name: 'db', runner, memoryMiB: 1 << 30, extra: 1 },
      });
      expect(bad).toMatchObject({ ok: false, error: { code: 'INVALID' } });
      expect(JSON.stringify(bad)).toMatch(/memoryMiB: .*above the maximum/);
      expect(JSON.stringify(bad)).toMatch(/extra/);
      expect(
        await cb.request({
          op: 'vm.run',
          node: 'nobody',
          spec: { version: 1, name: 'db', runner },
        }),
      ).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
      // A unique prefix of a peer ID names the node (--on: the constraint name = that node);
      // the answer comes once the leader placed it.
      const put = await cb.request({
        op: 'vm.run',
        node: a.id.slice(0, 20),
        spec: { version: 1, name: 'db', runner },
      });
      expect(put).toMatchObject({ ok: true, vms: [{ name: 'db', node: a.id }] });
      expect((put as unknown as { vms: { placement: string }[] }).vms[0]!.placement).toMatch(
        /^placed on /,
      );
      expect(await cb.request({ op: 'vm.list', node: a.id })).toMatchObject({
        ok: true,
        vms: [{ name: 'db' }],
      });
      expect(await cb.request({ op: 'vm.stop', name: 'db' })).toMatchObject({
        ok: true,
        vm: { desired: 'stopped' },
      });
      expect(await cb.request({ op: 'vm.rm', name: 'db' })).toMatchObject({ ok: true });
      expect(await cb.request({ op: 'vm.get', name: 'db' })).toMatchObject({
        ok: false,
        error: { code: 'NOT_FOUND' },
      });
    } finally {
      await cb.close();
    }
  });

  it('a second process on the same data dir is refused', async () => {
    const dir = join(dirs[0]!, 'a');
    await expect(
      Daemon.start({ dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], logger, accel: 'tcg' }),
    ).rejects.toBeInstanceOf(DataDirLockedError);
  });

  it('joining without the cluster secret is refused with a clear error', async () => {
    const dir = join(dirs[0]!, 'd');
    await expect(
      Daemon.start({
        dataDir: dir,
        listen: ['/ip4/127.0.0.1/tcp/0'],
        seeds: [daemons[0]!.addrs()[0]!],
        logger,
        accel: 'tcg',
      }),
    ).rejects.toThrow(/needs its secret/);
  });

  it('a node stopped before its join brought any entry, started again without a seed, joins through the seed it was first given', async () => {
    const base = await mkdtemp(join(tmpdir(), 'pcr-daemon-seeds-'));
    dirs.push(base);
    const start = (name: string, seeds?: string[]) =>
      Daemon.start({
        dataDir: join(base, name),
        listen: ['/ip4/127.0.0.1/tcp/0'],
        ...(seeds !== undefined ? { seeds, secretFile: join(base, 'a', CLUSTER_SECRET_FILE) } : {}),
        logger,
        accel: 'tcg',
      });
    let a = await start('a');
    await until(() => a.node.status().state === 'leader', 5000);
    const seed = a.addrs()[0]!;
    await a.stop();
    // The seed is down: b can only wait, and is stopped with an empty log.
    const b1 = await start('b', [seed]);
    await b1.stop();
    expect(b1.node.status().config.voters).toEqual([]);
    a = await start('a'); // binds the port it had (its address book)
    daemons.push(a);
    await until(() => a.node.status().state === 'leader', 5000);
    // Without a seed and with no log, b would bootstrap a cluster of its own (itself its only
    // voter, at once); it joins a's instead.
    const b2 = await start('b');
    daemons.push(b2);
    expect(b2.node.status().config.voters).not.toContain(b2.id);
    await until(() => a.node.status().config.voters.includes(b2.id), 15_000);
    await until(() => b2.node.status().lead === a.id, 15_000);
  });

  it('a kept seed list that cannot be read stops the start with the file named, rather than bootstrapping', async () => {
    const base = await mkdtemp(join(tmpdir(), 'pcr-daemon-seeds-bad-'));
    dirs.push(base);
    await mkdir(join(base, 'n'), { recursive: true });
    await writeFile(join(base, 'n', JOIN_SEEDS_FILE), '{"seeds": 7}');
    await expect(
      Daemon.start({
        dataDir: join(base, 'n'),
        listen: ['/ip4/127.0.0.1/tcp/0'],
        logger,
        accel: 'tcg',
      }),
    ).rejects.toThrow(/join-seeds\.json is not a list of seeds/);
  });
});
