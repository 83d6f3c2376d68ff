// `pcr deploy watch` end to end: a real git repository (file:// URL) holding a test flake (no
// nixpkgs: /bin/sh derivations, test/deploy/flakes.ts), a real node process, the real Nix, and the
// `pcr deploy watch` process itself at a 1 s interval. The first commit is deployed as version 1
// and rolls out behind its console health check; a commit whose evaluation fails is printed once
// with Nix's text and not tried again while it stays the head (git ls-remote is counted through a
// PATH shim that hands every call to the real git); the next commit changes the runner and is
// deployed as version 2 from exactly that commit; SIGTERM stops watch with status 0. The runner is
// a labelled stand-in for a hypervisor (it prints a line and sleeps), as in deploy_cluster.test.ts.

import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, expect, it } from 'vitest';
import { standInRunnerScript, writeTestFlake } from '../test/deploy/flakes.ts';
import { deploymentOf, recorded, rolledOut } from '../test/deploy/node.ts';
import {
  closeClients,
  type NodeProc,
  PCR,
  request,
  startNode,
  stop,
  until,
} from '../test/procs.ts';
import { describeWithTools, nixEnv } from '../test/tools.ts';
import { sweep } from '../test/vmm/helpers.ts';
import { VM_RUN_DIR } from './daemon.ts';
import type { VmEntry } from './state/vms.ts';

const dirs: string[] = [];
let node: NodeProc | undefined;
let watch: ResultPromise | undefined;
afterAll(async () => {
  if (watch !== undefined && watch.exitCode === null) {
    watch.kill('SIGKILL');
    await watch.catch(() => {});
  }
  await closeClients();
  if (node !== undefined) {
    if (node.child.exitCode === null) await stop(node);
    await sweep(join(node.dataDir, VM_RUN_DIR));
  }
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const WEB = `web = {
  spec = { version = 1; runner = "\${runner}"; memoryMiB = 64; count = 2; allowSharing = true;
           health = [ { console = "web ready"; graceMs = 0; } ]; };
  update = { maxParallel = 1; minHealthyMs = 500; healthyDeadlineMs = 30000;
             progressDeadlineMs = 60000; };
};`;

const BROKEN = `{ outputs = { self }: { procurator.deployments.web = throw "broken on purpose"; }; }\n`;

describeWithTools(['nix', 'nix-store', 'git'], 'pcr deploy watch on a real node', () => {
  it('deploys the first commit, skips a failing one after printing it once, deploys the next as v2', {
    timeout: 300_000,
  }, async () => {
    const base = await mkdtemp('/tmp/pcr-dw-');
    dirs.push(base);
    const n = await startNode(base, 'n', ['--name', 'n', '--store', 'nix', '--cache', 'off']);
    node = n;

    // The repository: v1 committed on main; v2 written elsewhere, committed later.
    const repo = (
      await writeTestFlake({
        deployments: WEB,
        runnerScript: standInRunnerScript('web ready v1'),
        git: true,
      })
    ).dir;
    const v2 = (
      await writeTestFlake({ deployments: WEB, runnerScript: standInRunnerScript('web ready v2') })
    ).dir;
    dirs.push(repo, v2);
    const git = async (...args: string[]) =>
      (
        await execa('git', ['-c', 'user.email=t@example.org', '-c', 'user.name=t', ...args], {
          cwd: repo,
        })
      ).stdout.trim();
    await git('branch', '-M', 'main');
    const commit1 = await git('rev-parse', 'HEAD');

    // git through a shim that counts ls-remote calls (one per interval) and runs the real git.
    const gitPath = (await execa('sh', ['-c', 'command -v git'])).stdout.trim();
    const shim = join(base, 'bin');
    const calls = join(base, 'ls-remote.calls');
    await execa('mkdir', ['-p', shim]);
    await writeFile(calls, '');
    await writeFile(
      join(shim, 'git'),
      `#!/bin/sh\n[ "$1" = ls-remote ] && echo x >> ${calls}\nexec ${gitPath} "$@"\n`,
    );
    await chmod(join(shim, 'git'), 0o755);
    const lsRemotes = async () => (await readFile(calls, 'utf8')).length / 2;

    await recorded(n);

    const lines: string[] = [];
    watch = execa(
      PCR,
      [
        'deploy',
        'watch',
        `file://${repo}`,
        '--branch',
        'main',
        '--interval',
        '1s',
        '--data-dir',
        n.dataDir,
      ],
      { env: { ...nixEnv(), PATH: `${shim}:${process.env.PATH}` }, reject: false, stdin: 'ignore' },
    );
    let out = '';
    watch.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const parts = out.split('\n');
      out = parts.pop()!;
      lines.push(...parts);
    });
    const line = (re: RegExp, what: string) =>
      until(
        () => lines.find((l) => re.test(l)),
        120_000,
        `${what}; watch printed:\n${lines.join('\n')}`,
      );
    const get = () => deploymentOf(n);
    const settled = (to: number) => rolledOut(n, to);

    await line(new RegExp(`^${commit1.slice(0, 12)}: web: version 1 submitted$`), 'v1 submitted');
    let d = await settled(1);
    expect(d.versions[0]!.source.commit).toBe(commit1);

    // A commit whose evaluation fails: printed once with Nix's text, then left alone.
    await writeFile(join(repo, 'flake.nix'), BROKEN);
    await git('commit', '-qam', 'broken');
    const commit2 = await git('rev-parse', 'HEAD');
    await line(new RegExp(`^${commit2.slice(0, 12)}: web: failed: evaluating`), 'the failure');
    await line(/broken on purpose/, "Nix's text");
    const seen = await lsRemotes();
    await until(
      async () => ((await lsRemotes()) >= seen + 3 ? true : undefined),
      60_000,
      'three more intervals',
    );
    expect(lines.filter((l) => l.startsWith(`${commit2.slice(0, 12)}: web: failed`))).toHaveLength(
      1,
    );
    expect(lines.filter((l) => l.startsWith(`${commit2.slice(0, 12)}: new head`))).toHaveLength(1);
    expect((await get())!.versions.map((v) => v.n)).toEqual([1]);

    // The next commit changes the runner: version 2, from exactly that commit.
    await copyFile(join(v2, 'flake.nix'), join(repo, 'flake.nix'));
    await git('commit', '-qam', 'v2');
    const commit3 = await git('rev-parse', 'HEAD');
    await line(new RegExp(`^${commit3.slice(0, 12)}: web: version 2 submitted$`), 'v2 submitted');
    d = await settled(2);
    const v2Version = d.versions.find((v) => v.n === 2)!;
    expect(v2Version.source.commit).toBe(commit3);
    expect(v2Version.source.flake).toContain(`rev=${commit3}`);
    const r = await request(n, n, { op: 'vm.list', group: 'web' }, 5000);
    if (!r.ok) throw new Error(r.error.message);
    expect((r.vms as VmEntry[]).map((v) => [v.version, v.spec.runner, v.state])).toEqual([
      [2, v2Version.spec.runner, 'running'],
      [2, v2Version.spec.runner, 'running'],
    ]);

    watch.kill('SIGTERM');
    const done = await watch;
    expect(done.exitCode, String(done.stderr)).toBe(0);
    expect(lines.at(-1)).toBe('stopped');
  });
});
