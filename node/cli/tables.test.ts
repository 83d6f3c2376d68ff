// What `pcr` tables say about a running node (a real process, a Nix chroot store filled by the
// real Nix): `store stats` counts the paths and NAR bytes its Nix store holds (it said 0 bytes),
// `store where` names the member; `vm list` and `vm status` show a VM's version (1, then 2 once
// its spec is replaced) and its node by name, while --json keeps the Raft index as generation.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, expect, it } from 'vitest';
import { type NodeProc, pcr, startNode, stop, until } from '../../test/procs.ts';
import { CLOSURE_EXPR, nixBuild, nixClosure } from '../../test/store/nix_fixtures.ts';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { shortId } from '../names.ts';

const base = await mkdtemp(join(tmpdir(), 'pcr-tables-'));
const running: NodeProc[] = [];
afterAll(async () => {
  for (const p of running) await stop(p).catch(() => {});
  await rm(base, { recursive: true, force: true });
});

/** A runner path no member holds: the VM is committed (and then fails to fetch). */
const RUNNER = '/nix/store/0c6lw3rq0qvd4n4ys4fvnnbd5bxxc0nk-microvm-run-web';

describeWithTools(['nix', 'nix-store'], 'tables of a running node', () => {
  it('store stats counts what its Nix store holds; vm tables show versions and names', {
    timeout: 180_000,
  }, async () => {
    const top = await nixBuild(base, CLOSURE_EXPR, `tables-${Date.now()}`);
    const closure = await nixClosure(top);
    const chroot = join(base, 'chroot');
    await execa('nix', ['copy', '--no-check-sigs', '--to', chroot, top], { env: nixEnv() });
    const infos = JSON.parse(
      (
        await execa('nix', ['path-info', '--json', '--store', chroot, ...closure], {
          env: nixEnv(),
        })
      ).stdout,
    ) as { narSize: number }[];
    const narBytes = infos.reduce((n, i) => n + i.narSize, 0);

    const n = await startNode(base, 'alpha', ['--name', 'alpha', '--store', `nix:${chroot}`]);
    running.push(n);
    const on = (args: string[]) => pcr([...args, '--data-dir', n.dataDir]);
    const alpha = `alpha (${shortId(n.id)})`;
    // The name is recorded in the member table through Raft, shortly after start.
    await until(
      async () => ((await on(['members'])).stdout.includes('alpha') ? true : undefined),
      30_000,
      'the name in the member table',
    );

    const stats = await on(['store', 'stats', '--json']);
    expect(stats.exitCode, stats.stderr).toBe(0);
    expect(JSON.parse(stats.stdout)).toMatchObject({
      kind: 'nix',
      paths: closure.length,
      bytes: narBytes,
    });
    expect(narBytes).toBeGreaterThan(0);
    expect((await on(['store', 'stats'])).stdout).toMatch(
      new RegExp(`^bytes\\s+${narBytes}\\b`, 'm'),
    );
    expect((await on(['store', 'where', top])).stdout.trim()).toBe(alpha);

    const spec = join(base, 'web.json');
    const run = async (memoryMiB: number) => {
      await writeFile(spec, JSON.stringify({ version: 1, name: 'web', runner: RUNNER, memoryMiB }));
      const r = await on(['vm', 'run', spec, '--on', 'alpha', '--detach']);
      expect(r.exitCode, r.stderr).toBe(0);
    };
    await run(128);
    await run(256);
    // Placed by the leader's loop (vm run waits for it only so long).
    await until(
      async () => {
        const [v] = JSON.parse((await on(['vm', 'list', '--json'])).stdout) as { node: string }[];
        return v?.node === n.id ? true : undefined;
      },
      30_000,
      'web placed on alpha',
    );
    const list = await on(['vm', 'list']);
    expect(list.stdout).toMatch(/^NAME\s+VERSION\s+NODE\s+DESIRED\s+STATE/m);
    expect(list.stdout).toMatch(
      new RegExp(`^web\\s+2\\s+${alpha.replace(/[()]/g, '\\$&')}\\s+running`, 'm'),
    );
    expect(list.stdout).not.toContain(n.id);
    const [json] = JSON.parse((await on(['vm', 'list', '--json'])).stdout) as {
      version: number;
      generation: number;
      node: string;
    }[];
    expect(json).toMatchObject({ version: 2, node: n.id });
    expect(json!.generation).toBeGreaterThan(2); // the Raft index of the second put

    const status = (await on(['vm', 'status', 'web'])).stdout;
    expect(status).toMatch(/^version {5}2$/m);
    expect(status).toContain(`node        ${alpha}`);
    expect(status).not.toMatch(/generation/i);
    expect(status).toMatch(/^TIME\s+VERSION\s+STATE\s+REASON/m);
    expect(status).toMatch(/^\S+\s+1\s+pending/m);
    expect(status).toMatch(/^\S+\s+2\s+pending/m);
  });
});
