// From `pcr` to a running VM on a 3-node cluster of real processes (issue 6's end-to-end test):
// a microvm.nix-shaped runner closure built with the real Nix is pushed into node A's store; a
// client on node C runs it on node B, which fetches the closure from A peer to peer and starts it;
// the guest's marker shows in `pcr vm logs`; a kill -9 of the VMM is followed by a restart per the
// spec's policy; `pcr vm stop` powers the guest down gracefully; a VM whose closure nobody holds
// fails with the reason and exit 8; a bad spec is refused with exit 2.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  closeClients,
  kill9,
  type NodeProc,
  PCR,
  pcr,
  secretFileOf,
  startCluster,
  startNode,
  until,
} from '../test/procs.ts';
import { describeWithTools } from '../test/tools.ts';
import { buildTestVm, TEST_VM_MARKER, TEST_VM_POWERDOWN_MARKER } from '../test/vmm/fixture.ts';
import { sweep, vmmsUnder } from '../test/vmm/helpers.ts';
import { buildRunnerClosure } from '../test/vmm/runner.ts';
import { VM_RUN_DIR } from './daemon.ts';

let base = '';
const procs: NodeProc[] = [];

beforeAll(async () => {
  // Short: VMM sockets live under the data dirs (unix socket paths are at most 107 bytes).
  base = await mkdtemp('/tmp/pcr-vmc-');
});
afterAll(async () => {
  await closeClients();
  for (const p of procs) if (p.child.exitCode === null) await kill9(p).catch(() => {});
  for (const p of procs) await sweep(join(p.dataDir, VM_RUN_DIR));
  await rm(base, { recursive: true, force: true });
});

describeWithTools(
  ['nix', 'nix-store', 'qemu-system-x86_64', 'busybox'],
  'VMs on a cluster of real node processes',
  () => {
    let a: NodeProc;
    let b: NodeProc;
    let c: NodeProc;
    let runner = '';
    const cli = (p: NodeProc, args: string[], timeoutMs?: number) =>
      pcr([...args, '--addr', p.addr, '--secret-file', secretFileOf(a)], timeoutMs);
    const logs = async (name: string) => (await cli(c, ['vm', 'logs', name])).stdout;
    const count = (text: string, marker: string) => text.split(marker).length - 1;

    beforeAll(async () => {
      const vm = await buildTestVm();
      runner = await buildRunnerClosure(vm, `pcr-e2e-${Date.now()}`);
      [a, b, c] = (await startCluster(base, ['a', 'b', 'c'], ['--store', 'local'], procs)) as [
        NodeProc,
        NodeProc,
        NodeProc,
      ];
      const push = await cli(a, ['store', 'push', runner]);
      expect(push.exitCode, push.stderr).toBe(0);
    }, 180_000);

    it('runs on B from C with the closure fetched from A; logs; restart after kill -9; graceful stop', {
      timeout: 300_000,
    }, async () => {
      const spec = join(base, 'e2e.json');
      await writeFile(
        spec,
        JSON.stringify({
          version: 1,
          name: 'e2e',
          runner,
          memoryMiB: 128,
          restart: {
            policy: 'on-failure',
            maxAttempts: 3,
            backoffInitialMs: 200,
            backoffMaxMs: 1000,
          },
        }),
      );
      const run = await cli(c, ['vm', 'run', spec, '--on', b.id, '--json'], 120_000);
      expect(run.exitCode, run.stderr).toBe(0);
      expect(JSON.parse(run.stdout)).toMatchObject({ name: 'e2e', node: b.id, state: 'running' });
      // The states went through Raft in order, and B fetched the closure from A.
      const events = JSON.parse((await cli(c, ['vm', 'status', 'e2e', '--json'])).stdout)
        .events as {
        state: string;
        reason?: string;
      }[];
      // Submitted (pending), placed on B by the leader (pending, with where and why), then B's reports.
      expect(events.map((e) => e.state)).toEqual([
        'pending',
        'pending',
        'fetching',
        'starting',
        'running',
      ]);
      expect(events[1]!.reason).toMatch(/^placed on \S+ at index \d+/);
      const where = JSON.parse((await cli(c, ['store', 'where', runner, '--json'])).stdout);
      expect(where).toContain(b.id);
      const stats = JSON.parse((await cli(b, ['store', 'stats', '--json'])).stdout);
      expect(stats.pathsFetched).toBeGreaterThan(0);

      await until(async () => count(await logs('e2e'), TEST_VM_MARKER) >= 1, 60_000, 'the marker');

      // kill -9 of the VMM: the policy restarts it, and the guest boots again.
      const pids = vmmsUnder(join(b.dataDir, VM_RUN_DIR));
      expect(pids.length).toBeGreaterThan(0);
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      await until(
        async () => count(await logs('e2e'), TEST_VM_MARKER) >= 2,
        90_000,
        'a second boot',
      );
      const status = JSON.parse((await cli(c, ['vm', 'status', 'e2e', '--json'])).stdout);
      expect(status.state).toBe('running');

      // `pcr vm logs --follow` streams the console as it grows.
      const follow = execa(
        PCR,
        ['vm', 'logs', 'e2e', '--follow', '--addr', c.addr, '--secret-file', secretFileOf(a)],
        { reject: false, stdin: 'ignore' },
      );
      let followed = '';
      follow.stdout?.on('data', (d: Buffer) => {
        followed += d.toString();
      });
      await until(
        () => count(followed, TEST_VM_MARKER) >= 2,
        30_000,
        'the marker through --follow',
      );
      follow.kill('SIGTERM');
      await follow;

      // kill -9 of B's daemon: the VM keeps running; the restarted daemon adopts it, no second VMM.
      const vmmBefore = vmmsUnder(join(b.dataDir, VM_RUN_DIR));
      expect(vmmBefore.length).toBe(1);
      await kill9(b);
      const b2 = await startNode(base, 'b', []);
      procs.push(b2);
      Object.assign(b, b2);
      await until(
        async () => {
          const st = await cli(b, ['status', '--json']);
          return st.exitCode === 0 && JSON.parse(st.stdout).leader !== '' ? true : undefined;
        },
        30_000,
        'B back in the cluster',
      );
      await new Promise((r) => setTimeout(r, 2000)); // a few agent rounds
      expect(vmmsUnder(join(b.dataDir, VM_RUN_DIR))).toEqual(vmmBefore);
      expect(count(await logs('e2e'), TEST_VM_MARKER)).toBe(2); // not booted again
      expect(JSON.parse((await cli(c, ['vm', 'status', 'e2e', '--json'])).stdout).state).toBe(
        'running',
      );

      const stop = await cli(c, ['vm', 'stop', 'e2e', '--json'], 120_000);
      expect(stop.exitCode, stop.stderr).toBe(0);
      expect(JSON.parse(stop.stdout)).toMatchObject({ state: 'stopped' });
      expect(await logs('e2e')).toContain(TEST_VM_POWERDOWN_MARKER);
      expect(vmmsUnder(join(b.dataDir, VM_RUN_DIR))).toEqual([]);

      const removed = await cli(c, ['vm', 'rm', 'e2e']);
      expect(removed.exitCode, removed.stderr).toBe(0);
      const list = JSON.parse((await cli(a, ['vm', 'list', '--json'])).stdout);
      expect(list).toEqual([]);
    });

    it('every node advertises the backends that work on it in its gossiped metrics', async () => {
      await until(
        async () => {
          const r = await cli(c, ['nodes', '--json']);
          if (r.exitCode !== 0) return undefined;
          const nodes = JSON.parse(r.stdout) as { vmms: string[] }[];
          return nodes.length === 3 &&
            nodes.every((n) => n.vmms.includes('qemu') && n.vmms.includes('microvm'))
            ? true
            : undefined;
        },
        30_000,
        "qemu and microvm in every node's gossiped vmms",
      );
    });

    it('a VM whose closure no member holds fails with the reason (exit 8); a bad spec exits 2', {
      timeout: 120_000,
    }, async () => {
      const spec = join(base, 'nothing.json');
      await writeFile(
        spec,
        JSON.stringify({
          version: 1,
          name: 'nothing',
          runner: '/nix/store/00000000000000000000000000000000-microvm-run-nothing',
        }),
      );
      const run = await cli(c, ['vm', 'run', spec, '--on', a.id], 60_000);
      expect(run.exitCode, run.stderr).toBe(8);
      expect(run.stderr).toMatch(/nothing failed: .*no peer holds/);
      await cli(c, ['vm', 'rm', 'nothing']);

      const bad = join(base, 'bad.json');
      await writeFile(
        bad,
        JSON.stringify({ version: 1, name: 'Bad Name', runner, memoryMiB: 1 << 30 }),
      );
      const refused = await cli(c, ['vm', 'run', bad, '--on', a.id]);
      expect(refused.exitCode).toBe(2);
      expect(refused.stderr).toMatch(/name: /);
      expect(refused.stderr).toMatch(/memoryMiB: /);
    });
  },
);
