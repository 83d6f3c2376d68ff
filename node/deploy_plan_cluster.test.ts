// `pcr deploy plan` against a version that runs on a real node process (docs/deploy.md, "Closure
// diff"): v1 of a test flake is deployed and becomes known-good; the plan of v2, whose runner
// closure moves a library from 1.0 to 2.0 (and grows it) and adds a package, exits 14 with the
// package lines `nix store diff-closures` prints for the two runner paths, run here on the same
// pair; the plan of v1 again exits 0 with no package line. Then v1's closure is deleted from the
// local Nix store (a deploying machine that no longer has it): the plan of v2 takes it from the
// member's store and prints the same lines. The node keeps a node-local store: once v2 runs
// instead, v1 is only known-good, and the store's gc keeps its closure (the daemon pins it) while
// a pushed path nothing needs goes. The real Nix builds the flakes (no nixpkgs: /bin/sh
// derivations); the runner is a labelled stand-in for a hypervisor (its bin/microvm-run prints a
// line and sleeps), as in node/deploy_cluster.test.ts.

import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, expect, it } from 'vitest';
import { writeTestFlake } from '../test/deploy/flakes.ts';
import { recorded, rolledOut } from '../test/deploy/node.ts';
import { closeClients, type NodeProc, PCR, request, startNode, stop } from '../test/procs.ts';
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

/**
 * The flake's outputs: packages named as nixpkgs names them (name-version), the runner referring
 * to `libs` (the packages, interpolated: `${libfoo1}`). Names carry a token of this run so that the paths
 * are new to the store (built here, by this test).
 */
function outputs(token: string, libs: string): string {
  return `let
    mk = name: cmd: derivation { inherit name system; builder = "/bin/sh"; args = [ "-c" cmd ]; };
    blob = kib: "/bin/mkdir $out && /bin/dd if=/dev/zero of=$out/lib bs=1024 count=\${toString kib} 2>/dev/null && echo ${token} >> $out/lib";
    libfoo1 = mk "pcr-plan-libfoo-${token}-1.0" (blob 4);
    libfoo2 = mk "pcr-plan-libfoo-${token}-2.0" (blob 24);
    extra = mk "pcr-plan-extra-${token}-0.5" "/bin/mkdir $out && echo ${token} > $out/extra";
    runner = mk "microvm-run-plan-${token}" ''/bin/mkdir -p $out/bin && printf "#!/bin/sh\\necho web ready ${libs}\\nexec /bin/sleep 600\\n" > $out/bin/microvm-run && /bin/chmod +x $out/bin/microvm-run'';
  in {
    procurator.deployments.web = {
      spec = { version = 1; runner = "\${runner}"; memoryMiB = 64; count = 1;
               health = [ { console = "web ready"; graceMs = 0; } ]; };
      update = { maxParallel = 1; minHealthyMs = 500; healthyDeadlineMs = 8000;
                 progressDeadlineMs = 30000; };
    };
  }`;
}

async function flake(token: string, libs: readonly string[]): Promise<string> {
  const refs = libs.map((l) => `\${${l}}`).join(' ');
  const f = await writeTestFlake({ outputs: outputs(token, refs) });
  dirs.push(f.dir);
  return `${f.dir}#web`;
}

/** Nix colours the size deltas (ESC [ ... m), even into a pipe. */
const plain = (s: string) =>
  s.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), '');

describeWithTools(['nix', 'nix-store', 'nix-build'], 'pcr deploy plan on a real node', () => {
  it('v2 against the running v1: exit 14 with the lines of nix store diff-closures (v1 here or only on the member); v1 again: exit 0; gc keeps the known-good v1', {
    timeout: 300_000,
  }, async () => {
    const base = await mkdtemp('/tmp/pcr-plan-');
    dirs.push(base);
    // A node-local store (pinned closures, gc), fed from the machine's Nix store by pcr deploy.
    const n = await startNode(base, 'n', ['--name', 'n', '--store', 'local', '--cache', 'off']);
    node = n;
    const pcr = (...args: string[]) =>
      execa(PCR, [...args, '--data-dir', n.dataDir], {
        env: nixEnv(),
        reject: false,
        stdin: 'ignore',
      });
    await recorded(n);
    // A letter first: the token is part of the package names, not of their versions.
    const token = `t${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    const v1 = await flake(token, ['libfoo1']);
    const v2 = await flake(token, ['libfoo2', 'extra']);

    const deployed = await pcr('deploy', v1, '--json');
    expect(deployed.exitCode, String(deployed.stderr)).toBe(0);
    const settled = (to: number) => rolledOut(n, to);
    const d = await settled(1);
    const r1 = d.versions[0]!.spec.runner!;

    // v2's runner path, built (and nothing submitted) by pcr deploy --dry-run.
    const dry = await pcr('deploy', v2, '--dry-run', '--json');
    expect(dry.exitCode, String(dry.stderr)).toBe(0);
    const r2 = (JSON.parse(String(dry.stdout)) as { spec: { runner: string } }).spec.runner;
    expect(r2).not.toBe(r1);

    const closureOf = async (p: string) =>
      (await execa('nix-store', ['--query', '--requisites', p], { env: nixEnv() })).stdout
        .split('\n')
        .filter((l) => l !== '');
    const onlyV1 = (await closureOf(r1)).filter((p) => p.includes(token));
    expect(onlyV1).toHaveLength(2); // the runner and libfoo 1.0
    const nixDiff = await execa('nix', ['store', 'diff-closures', r1, r2], { env: nixEnv() });
    const expected = plain(nixDiff.stdout)
      .split('\n')
      .filter((l) => l !== '');
    // The pair is what the test says it is: a version change with growth, a new package.
    expect(expected).toEqual(
      expect.arrayContaining([
        `pcr-plan-libfoo-${token}: 1.0 → 2.0, +20.0 KiB`,
        `pcr-plan-extra-${token}: ∅ → 0.5`,
      ]),
    );

    const plan = await pcr('deploy', 'plan', v2);
    expect(plan.exitCode, String(plan.stderr) + String(plan.stdout)).toBe(EXIT.changes);
    const text = String(plan.stdout).split('\n');
    expect(text[0]).toBe('web: changes against version 1');
    const packages = text.slice(
      text.indexOf('closure:') + 1,
      text.findIndex((l) => l.startsWith('closure size:')),
    );
    expect(packages.map((l) => l.slice(2))).toEqual(expected);
    expect(text).toContain('spec: runner changed');
    // The one instance is replaced where it runs.
    expect(text.slice(text.indexOf('instances:'))).toEqual(['instances:', '  replace web (on n)']);
    // --json says the same.
    const planJson = await pcr('deploy', 'plan', v2, '--json');
    expect(planJson.exitCode).toBe(EXIT.changes);
    expect(JSON.parse(String(planJson.stdout))).toMatchObject({
      name: 'web',
      current: 1,
      specFields: ['runner'],
      updateFields: [],
      changes: true,
    });

    // v1 again: what runs.
    const same = await pcr('deploy', 'plan', v1);
    expect(same.exitCode, String(same.stderr) + String(same.stdout)).toBe(EXIT.ok);
    expect(String(same.stdout).split('\n')[0]).toBe('web: no changes against version 1');
    expect(String(same.stdout)).not.toMatch(/^closure:/m);
    expect(
      plain((await execa('nix', ['store', 'diff-closures', r1, r1], { env: nixEnv() })).stdout),
    ).toBe('');

    // The deploying machine no longer has v1's closure: the member's store answers for it.
    const deleted = await execa('nix-store', ['--delete', ...onlyV1], {
      env: nixEnv(),
      reject: false,
    });
    expect(deleted.exitCode, String(deleted.stderr)).toBe(0);
    const gone = await execa('nix-store', ['--check-validity', r1], { reject: false });
    expect(gone.exitCode).not.toBe(0);
    const remote = await pcr('deploy', 'plan', v2);
    expect(remote.exitCode, String(remote.stderr) + String(remote.stdout)).toBe(EXIT.changes);
    expect(String(remote.stdout)).toBe(String(plan.stdout));

    // v2 replaces v1: v1's closure is no longer a VM's, only a known-good version's; gc keeps it.
    const up = await pcr('deploy', v2, '--json');
    expect(up.exitCode, String(up.stderr)).toBe(0);
    const d2 = await settled(2);
    expect(d2.good).toEqual([1, 2]);
    const v3 = await flake(`${token}x`, ['libfoo1']);
    const dry3 = await pcr('deploy', v3, '--dry-run', '--json');
    const r3 = (JSON.parse(String(dry3.stdout)) as { spec: { runner: string } }).spec.runner;
    const pushed = await pcr('store', 'push', r3);
    expect(pushed.exitCode, String(pushed.stderr)).toBe(0);
    const gc = await request(n, n, { op: 'store.gc' }, 30_000);
    expect(gc.ok, JSON.stringify(gc)).toBe(true);
    const freed = (gc as unknown as { paths: string[] }).paths;
    expect(freed).toContain(r3);
    for (const p of [...onlyV1, r2]) expect(freed).not.toContain(p);
    const info = await request(n, n, { op: 'store.info', path: r1 }, 5000);
    expect(info).toMatchObject({ ok: true, here: true });
  });
});
