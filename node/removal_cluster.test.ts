// Removal of a member, on real node processes (bin/pcr node start) on loopback: a member removed
// while it was down, restarted, finds out from the members, says so and exits with code 10; its
// record is gone and a join under its ID is refused (REMOVED). A member removed while it is up
// applies or hears of its own removal and exits the same way. `--rejoin` brings the data dir back
// as a new member. With a quorum of voters gone, a write says which voters are unreachable.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closeClients,
  kill9,
  type NodeProc,
  pcr,
  request,
  secretFileOf,
  startCluster,
  startNode,
  until,
} from '../test/procs.ts';
import { EXIT } from './cli/client.ts';

/**
 * A removed node's restart must end within this: process start, the instance check, no leader
 * for probeAfterMs (3 s), one probe (at most PROBE_TIMEOUT_MS), stopping. Generous for a loaded
 * 2-core machine; a node that loops as preCandidate (the bug) never exits.
 */
const REMOVED_EXIT_BOUND_MS = 40_000;

let base = '';
const procs: NodeProc[] = [];

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'pcr-removal-'));
});
afterAll(async () => {
  await closeClients();
  for (const p of procs) if (p.child.exitCode === null) await kill9(p).catch(() => {});
  await rm(base, { recursive: true, force: true });
});

async function members(p: NodeProc): Promise<{ id: string; role: string }[] | undefined> {
  const r = await request(p, p, { op: 'members' }, 3000).catch(() => undefined);
  return r?.ok === true ? (r.members as { id: string; role: string }[]) : undefined;
}

async function votersAre(p: NodeProc, n: number): Promise<true | undefined> {
  const ms = await members(p);
  return ms !== undefined && ms.filter((m) => m.role === 'voter').length === n ? true : undefined;
}

describe('removal of a member, on real processes', { timeout: 240_000 }, () => {
  let a: NodeProc;
  let b: NodeProc;
  let c: NodeProc;

  it('removed while down: restarted, it exits with code 10 and says why; a join under its ID is refused', async () => {
    [a, b, c] = await startCluster(base, ['a', 'b', 'c'], [], procs);
    await until(() => votersAre(a, 3), 30_000, '3 voters');
    c.child.kill('SIGTERM');
    await c.child;
    const removed = await pcr(['operator', 'raft', 'remove-peer', c.id, '--data-dir', a.dataDir]);
    expect(removed.exitCode, removed.stderr).toBe(0);
    await until(
      async () => ((await members(a))?.some((m) => m.id === c.id) === false ? true : undefined),
      10_000,
      'c gone from the member table',
    );

    const t0 = Date.now();
    const restart = await pcr(
      [
        'node',
        'start',
        '--data-dir',
        c.dataDir,
        '--listen',
        '/ip4/127.0.0.1/tcp/0',
        '--accel',
        'tcg',
      ],
      REMOVED_EXIT_BOUND_MS,
    );
    const tookMs = Date.now() - t0;
    console.log(`the removed node's restart exited with ${restart.exitCode} after ${tookMs} ms`);
    expect(restart.exitCode, restart.stderr).toBe(EXIT.removed);
    expect(restart.stderr).toMatch(/was removed from the cluster/);
    expect(restart.stderr).toMatch(/--rejoin/);
    expect(tookMs).toBeLessThan(REMOVED_EXIT_BOUND_MS);
    // Said once, not every second.
    expect(restart.stderr.match(/this node was removed from the cluster; stopping/g)).toHaveLength(
      1,
    );

    const st = (await members(a))!;
    expect(st.map((m) => m.id)).not.toContain(c.id);
    const join = await request(a, a, { op: 'join', id: c.id, addrs: [c.addr] });
    expect(join).toMatchObject({ ok: false, error: { code: 'REMOVED' } });
    // The cluster of two goes on.
    const put = await request(b, b, { op: 'kv.put', key: 'after-removal', value: '1' });
    expect(put.ok).toBe(true);
  });

  it('removed while up: it finds out by itself and exits with code 10', async () => {
    const d = await startNode(base, 'd', ['--seed', a.addr, '--secret-file', secretFileOf(a)]);
    procs.push(d);
    await until(() => votersAre(a, 3), 30_000, 'd promoted to voter');
    const removed = await pcr(['operator', 'raft', 'remove-peer', d.id, '--data-dir', b.dataDir]);
    expect(removed.exitCode, removed.stderr).toBe(0);
    const exit = await Promise.race([
      d.child,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), REMOVED_EXIT_BOUND_MS)),
    ]);
    expect(exit, `d still running: ${d.stderr.join('')}`).toBeDefined();
    expect(exit!.exitCode, d.stderr.join('')).toBe(EXIT.removed);
    expect(d.stderr.join('')).toMatch(/was removed from the cluster/);
    expect((await members(a))!.map((m) => m.id)).not.toContain(d.id);
  });

  it('--rejoin: the data dir joins again as a new member', async () => {
    const again = await startNode(base, 'c', ['--rejoin', '--seed', a.addr]);
    procs.push(again);
    expect(again.id).not.toBe(c.id);
    await until(() => votersAre(a, 3), 30_000, 'the new member promoted');
    const get = await request(again, again, { op: 'kv.get', key: 'after-removal' });
    expect(get).toMatchObject({ ok: true, value: '1' });
    c = again;
  });

  it('no quorum: a write names the voters this member cannot reach', async () => {
    await kill9(b);
    await kill9(c);
    const r = await until(
      async () => {
        const x = await request(a, a, { op: 'kv.put', key: 'k', value: 'v' }, 8000).catch(
          () => undefined,
        );
        return x?.ok === false && x.error.code === 'NO_LEADER' ? x : undefined;
      },
      30_000,
      'NO_LEADER from a',
    );
    expect(r.ok === false && r.error.message).toBe(
      `no quorum: 2 of 3 voters unreachable (${[b.id, c.id].sort().join(', ')})`,
    );
  });
});
