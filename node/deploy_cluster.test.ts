// Deployments end to end on a real node process with the real Nix (issue 19's proof on real
// processes): `pcr deploy FLAKE#web` evaluates and builds a test flake (no nixpkgs: /bin/sh
// derivations), pushes the closure, submits; the node's rollout duty replaces the two instances
// one at a time behind a console health check; the same flake again is a no-op; v2 becomes
// known-good; v3, whose instances never print the line the check waits for, misses its healthy
// deadline and is reverted automatically to v2's spec (a new version 4 saying it reverts 3), which
// then runs; `pcr deploy stop` stops the instances and keeps the versions, `pcr deploy rm` removes
// it all. The runner is a labelled stand-in for a hypervisor (its bin/microvm-run prints a line
// and sleeps), as in node/cli/vm_health.test.ts: what is under test is the orchestration.

import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, expect, it } from 'vitest';
import { standInRunnerScript, writeTestFlake } from '../test/deploy/flakes.ts';
import { deploymentOf, instancesOf, recorded, rolledOut } from '../test/deploy/node.ts';
import { closeClients, type NodeProc, PCR, startNode, stop, until } from '../test/procs.ts';
import { describeWithTools, nixEnv } from '../test/tools.ts';
import { sweep } from '../test/vmm/helpers.ts';
import { EXIT } from './cli/client.ts';
import { VM_RUN_DIR } from './daemon.ts';

const dirs: string[] = [];
let node: NodeProc | undefined;
afterAll(async () => {
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
  update = { maxParallel = 1; minHealthyMs = 500; healthyDeadlineMs = 8000;
             progressDeadlineMs = 30000; autoRevert = true; };
};`;

async function flake(line: string): Promise<string> {
  const f = await writeTestFlake({ deployments: WEB, runnerScript: standInRunnerScript(line) });
  dirs.push(f.dir);
  return `${f.dir}#web`;
}

describeWithTools(['nix', 'nix-store', 'nix-build'], 'deployments on a real node', () => {
  it('v1 and v2 roll out behind health checks, a re-submission is a no-op, v3 is reverted to v2; stop, rm', {
    timeout: 300_000,
  }, async () => {
    // Short: VMM sockets live under the data dir (unix socket paths are at most 107 bytes).
    const base = await mkdtemp('/tmp/pcr-dep-');
    dirs.push(base);
    // The node's store is the machine's Nix store, where the flake's runner is built.
    const n = await startNode(base, 'n', ['--name', 'n', '--store', 'nix', '--cache', 'off']);
    node = n;
    const deploy = async (ref: string) => {
      const r = await execa(PCR, ['deploy', ref, '--json', '--data-dir', n.dataDir], {
        env: nixEnv(),
        reject: false,
        stdin: 'ignore',
      });
      expect(r.exitCode, String(r.stderr) + String(r.stdout)).toBe(0);
      return JSON.parse(String(r.stdout)) as { answer: { noop?: boolean; version?: number } };
    };
    const get = () => deploymentOf(n);
    const settled = (to: number) => rolledOut(n, to);
    const instances = () => instancesOf(n);
    await recorded(n);

    const v1 = await flake('web ready v1');
    expect((await deploy(v1)).answer).toMatchObject({ noop: false, version: 1 });
    let d = await settled(1);
    expect(d.knownGood).toBe(1);
    const at1 = await instances();
    expect(at1.map((v) => [v.name, v.state, v.health?.healthy])).toEqual([
      ['web-0', 'running', true],
      ['web-1', 'running', true],
    ]);

    // The same flake again: nothing new.
    expect((await deploy(v1)).answer).toMatchObject({ noop: true, version: 1 });

    const v2 = await flake('web ready v2');
    expect((await deploy(v2)).answer).toMatchObject({ noop: false, version: 2 });
    d = await settled(2);
    expect(d.knownGood).toBe(2);
    const v2Runner = d.versions.find((v) => v.n === 2)!.spec.runner;
    expect((await instances()).map((v) => [v.version, v.spec.runner, v.state])).toEqual([
      [2, v2Runner, 'running'],
      [2, v2Runner, 'running'],
    ]);

    // v3 never prints "web ready": its first instance misses healthyDeadlineMs, the rollout fails
    // and, with autoRevert, v2's spec comes back as version 4.
    const v3 = await flake('web starting');
    expect((await deploy(v3)).answer).toMatchObject({ noop: false, version: 3 });
    d = await settled(4);
    const v4 = d.versions.find((v) => v.n === 4)!;
    expect(v4.source.revertOf).toBe(3);
    expect(v4.spec.runner).toBe(v2Runner);
    expect(d.knownGood).toBe(4);
    const final = await instances();
    expect(final.map((v) => [v.version, v.spec.runner, v.state, v.health?.healthy])).toEqual([
      [4, v2Runner, 'running', true],
      [4, v2Runner, 'running', true],
    ]);

    const cli = (args: string[]) =>
      execa(PCR, [...args, '--data-dir', n.dataDir], { reject: false, stdin: 'ignore' });
    // A rollback to a known-good version whose closure no member holds any more (deleted from the
    // machine's Nix store, which is this node's store) is refused before anything is committed.
    const v1Runner = d.versions.find((v) => v.n === 1)!.spec.runner!;
    const del = await execa('nix-store', ['--delete', v1Runner], { env: nixEnv(), reject: false });
    expect(del.exitCode, String(del.stderr)).toBe(0);
    const rb1 = await cli(['deploy', 'rollback', 'web', '--to', '1', '--json']);
    expect(rb1.exitCode).toBe(EXIT.notFound);
    expect(JSON.parse(String(rb1.stdout)).error.message).toMatch(/which no member holds any more/);
    expect((await get())?.versions).toHaveLength(4);
    // To version 2, whose closure runs: version 5, the same spec, so nothing restarts.
    expect((await cli(['deploy', 'rollback', 'web', '--to', '2'])).exitCode).toBe(0);
    d = await settled(5);
    expect(d.versions.at(-1)?.source.revertOf).toBe(4);

    // pcr deploy stop: the instances stop, the versions stay; pcr deploy rm: all of it is gone.
    expect((await cli(['deploy', 'stop', 'web'])).exitCode).toBe(0);
    await until(
      async () => ((await instances()).every((v) => v.state === 'stopped') ? true : undefined),
      60_000,
      'both instances stopped',
    );
    const status = await cli(['deploy', 'status', 'web']);
    expect(status.exitCode, String(status.stderr)).toBe(0);
    expect(String(status.stdout)).toMatch(/stopped/);
    expect((await get())?.versions.map((v) => v.n)).toEqual([1, 2, 3, 4, 5]);
    expect((await cli(['deploy', 'rm', 'web'])).exitCode).toBe(0);
    expect(await get()).toBeUndefined();
    expect(await instances()).toEqual([]);
  });
});
