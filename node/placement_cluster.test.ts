// The cluster places VMs itself, on 3 real node processes with real QEMU guests (docs/scheduling.md):
// a spec with `count: 2` and no --on lands on two distinct nodes; `pcr vm plan` and `pcr vm run`
// refuse a spec no node could hold (exit 13, with what each filter removed) and commit nothing;
// `pcr node drain` moves a node's instance to the free node, replacement first; kill -9 of a
// node's daemon and of its VMMs brings its instance up on another node once the leader marks it
// down (--node-down-after 7s here), and the reschedule latency is printed.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  closeClients,
  kill9,
  type NodeProc,
  pcr,
  secretFileOf,
  startNode,
  until,
} from '../test/procs.ts';
import { describeWithTools } from '../test/tools.ts';
import { buildTestVm } from '../test/vmm/fixture.ts';
import { sweep, vmmsUnder } from '../test/vmm/helpers.ts';
import { buildRunnerClosure } from '../test/vmm/runner.ts';
import { VM_RUN_DIR } from './daemon.ts';

let base = '';
const procs: NodeProc[] = [];

beforeAll(async () => {
  base = await mkdtemp('/tmp/pcr-plc-');
});
afterAll(async () => {
  await closeClients();
  for (const p of procs) if (p.child.exitCode === null) await kill9(p).catch(() => {});
  for (const p of procs) await sweep(join(p.dataDir, VM_RUN_DIR));
  await rm(base, { recursive: true, force: true });
});

/** Short lifecycle bounds that still satisfy the fencing inequality: (1 + 2 + 0.3 + 3) x 1.05 < 7. */
const LIFECYCLE = ['--node-down-after', '7s', '--fence-after', '1s'];

interface Row {
  name: string;
  node: string;
  state: string;
  placement?: string;
}

describeWithTools(
  ['nix', 'nix-store', 'qemu-system-x86_64', 'busybox'],
  'placement on a cluster of real node processes',
  () => {
    let a: NodeProc;
    let runner = '';
    const cli = (args: string[], timeoutMs?: number) =>
      pcr([...args, '--addr', a.addr, '--secret-file', secretFileOf(a)], timeoutMs);
    const vms = async (): Promise<Row[]> =>
      JSON.parse((await cli(['vm', 'list', '--json'])).stdout) as Row[];
    const allRunning = async (n: number) => {
      const rows = await vms();
      return rows.length === n && rows.every((r) => r.state === 'running' && r.node !== '')
        ? rows
        : undefined;
    };

    beforeAll(async () => {
      const vm = await buildTestVm();
      runner = await buildRunnerClosure(vm, `pcr-plc-${Date.now()}`);
      a = await startNode(base, 'a', [
        '--name',
        'a',
        '--store',
        'local',
        '--label',
        'zone=a',
        ...LIFECYCLE,
      ]);
      procs.push(a);
      for (const name of ['b', 'c']) {
        procs.push(
          await startNode(base, name, [
            '--name',
            name,
            '--seed',
            a.addr,
            '--secret-file',
            secretFileOf(a),
            '--store',
            'local',
            '--label',
            `zone=${name}`,
            ...LIFECYCLE,
          ]),
        );
      }
      // Every node registered its capacity and labels, and is ready.
      await until(
        async () => {
          const r = await cli(['node', 'list', '--json']);
          if (r.exitCode !== 0) return undefined;
          const nodes = JSON.parse(r.stdout) as { status: string; labels: { zone?: string } }[];
          return nodes.length === 3 && nodes.every((n) => n.status === 'ready') ? true : undefined;
        },
        120_000,
        'three ready nodes',
      );
      const push = await cli(['store', 'push', runner]);
      expect(push.exitCode, push.stderr).toBe(0);
    }, 240_000);

    it('places a group of 2 on distinct nodes, refuses the unplaceable, drains, and re-places after kill -9', {
      timeout: 420_000,
    }, async () => {
      const spec = join(base, 'web.json');
      await writeFile(
        spec,
        JSON.stringify({ version: 1, name: 'web', runner, memoryMiB: 128, count: 2 }),
      );
      const big = join(base, 'big.json');
      await writeFile(big, JSON.stringify({ version: 1, name: 'big', runner, memoryMiB: 65_536 }));

      // Unplaceable: plan and run both say why, with exit 13, and nothing is committed.
      const plan = await cli(['vm', 'plan', big]);
      expect(plan.exitCode, plan.stderr).toBe(13);
      expect(plan.stdout).toMatch(/big: no node fits: 3 nodes lacked memory/);
      const refused = await cli(['vm', 'run', big]);
      expect(refused.exitCode, refused.stderr).toBe(13);
      expect(refused.stderr).toMatch(
        /even with no VM placed, big: no node fits: 3 nodes lacked memory/,
      );
      const zoneX = join(base, 'zonex.json');
      await writeFile(
        zoneX,
        JSON.stringify({
          version: 1,
          name: 'zx',
          runner,
          memoryMiB: 128,
          constraints: [{ attribute: 'label.zone', operator: '=', value: 'x' }],
        }),
      );
      const noZone = await cli(['vm', 'run', zoneX]);
      expect(noZone.exitCode).toBe(13);
      expect(noZone.stderr).toMatch(/3 filtered by label.zone = x/);
      expect(await vms()).toEqual([]);

      // A dry run of the group, then the group itself: two distinct nodes, no --on.
      const dry = await cli(['vm', 'plan', spec, '--json']);
      expect(dry.exitCode, dry.stderr).toBe(0);
      expect((JSON.parse(dry.stdout).placements as unknown[]).length).toBe(2);
      const run = await cli(['vm', 'run', spec, '--json'], 180_000);
      expect(run.exitCode, run.stderr).toBe(0);
      expect(run.stderr).toMatch(
        /^web-0: placed on [abc] at index \d+ \(planned at \d+\): score [\d.]+, best of \d ranked \([abc] \(/m,
      );
      const placed = (await until(() => allRunning(2), 120_000, 'web-0 and web-1 running'))!;
      const [p0, p1] = [placed[0]!.node, placed[1]!.node];
      expect(p0).not.toBe(p1);
      // The group's name shows its instances.
      const group = await cli(['vm', 'status', 'web', '--json']);
      expect(group.exitCode, group.stderr).toBe(0);
      expect((JSON.parse(group.stdout) as Row[]).map((r) => r.name)).toEqual(['web-0', 'web-1']);
      const byId = new Map(procs.map((p) => [p.id, p]));
      const free = procs.find((p) => p.id !== p0 && p.id !== p1)!;

      // Drain the node of web-0: it moves to the free node; the drained node ends empty.
      const drain = await cli(['node', 'drain', byId.get(p0)!.name]);
      expect(drain.exitCode, drain.stderr).toBe(0);
      await until(
        async () => {
          const rows = await allRunning(2);
          return rows?.find((r) => r.name === 'web-0')?.node === free.id ? rows : undefined;
        },
        120_000,
        'web-0 moved off the drained node',
      );
      const status = JSON.parse(
        (await cli(['node', 'status', byId.get(p0)!.name, '--json'])).stdout,
      );
      expect(status).toMatchObject({ status: 'draining', vms: [] });
      // Its agent stops the old copy as the replacement starts.
      await until(
        () => vmmsUnder(join(byId.get(p0)!.dataDir, VM_RUN_DIR)).length === 0,
        60_000,
        'the drained copy stopped',
      );
      expect((await cli(['node', 'drain', byId.get(p0)!.name, '--cancel'])).exitCode).toBe(0);
      expect((await cli(['node', 'eligibility', byId.get(p0)!.name, 'on'])).exitCode).toBe(0);

      // kill -9 of an instance's node (not a: it serves the client) and of its VMMs: the
      // instance runs again on the node drained above, once the leader marks its node down.
      const holders = new Map([
        [free.id, 'web-0'],
        [p1, 'web-1'],
      ]);
      const victimId = [...holders.keys()].find((id) => id !== a.id)!;
      const victim = byId.get(victimId)!;
      const instance = holders.get(victimId)!;
      const started = Date.now();
      const vmms = vmmsUnder(join(victim.dataDir, VM_RUN_DIR));
      await kill9(victim);
      for (const pid of vmms) process.kill(pid, 'SIGKILL');
      await until(
        async () => {
          const rows = await allRunning(2);
          return rows?.find((r) => r.name === instance)?.node === p0 ? rows : undefined;
        },
        120_000,
        `${instance} running on another node`,
      );
      const nodes = JSON.parse((await cli(['node', 'list', '--json'])).stdout) as {
        id: string;
        status: string;
      }[];
      expect(nodes.find((n) => n.id === victim.id)?.status).toBe('down');
      process.stdout.write(
        `reschedule: kill -9 of a node to its instance running elsewhere in ${Date.now() - started} ms (node-down-after 7000 ms)\n`,
      );
    });
  },
);
