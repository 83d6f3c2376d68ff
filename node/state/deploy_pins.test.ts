// The roots the deployment table pins in every member's store (docs/deploy.md): the boot paths of
// the known-good versions the table holds, read from the table itself as the state machine builds
// it (versions succeeding, one failing and reverted, versions trimmed away).

import { describe, expect, it } from 'vitest';
import { Cluster, FAST } from '../../test/deploy/table.ts';
import { bootRoots, knownGoodRoots, storeRootOf } from './deploy_pins.ts';
import { DEPLOY_VERSIONS_KEPT } from './deployments.ts';
import { type VmSpec, validateVmSpec } from './vm_spec.ts';

const H = (c: string) => c.repeat(32);
const RUNNER = (c: string) => `/nix/store/${H(c)}-microvm-run-web`;

function spec(input: Record<string, unknown>): VmSpec {
  const r = validateVmSpec({ version: 1, name: 'web', ...input });
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.spec;
}

describe('storeRootOf and bootRoots', () => {
  it('a store path is its own root; a file inside one has it; anything else has none', () => {
    expect(storeRootOf(RUNNER('a'))).toBe(RUNNER('a'));
    expect(storeRootOf(`/nix/store/${H('b')}-linux-6.1/bzImage`)).toBe(
      `/nix/store/${H('b')}-linux-6.1`,
    );
    expect(storeRootOf(`/nix/store/${H('b')}-linux-6.1/`)).toBe(`/nix/store/${H('b')}-linux-6.1`);
    for (const p of [
      '/boot/vmlinuz',
      `/nix/store/${H('e')}-x`, // e is not a nix32 character
      `/nix/store/${H('a').slice(1)}-short`,
      `/nix/storex/${H('a')}-x`,
      `nix/store/${H('a')}-x`,
      `/nix/store/${H('a')}-bad name`,
      `/nix/store/${H('a')}`,
    ])
      expect(storeRootOf(p), p).toBeUndefined();
  });

  it('a runner spec boots from its runner; a kernel spec from its kernel, initrd and store disks', () => {
    expect(bootRoots(spec({ runner: RUNNER('a') }))).toEqual([RUNNER('a')]);
    const k = spec({
      kernel: `/nix/store/${H('b')}-linux/bzImage`,
      initrd: `/nix/store/${H('c')}-initrd/initrd`,
      disks: [{ path: `/nix/store/${H('d')}-root.img` }, { path: '/var/lib/vm/data.img' }],
    });
    expect(bootRoots(k)).toEqual([
      `/nix/store/${H('b')}-linux`,
      `/nix/store/${H('c')}-initrd`,
      `/nix/store/${H('d')}-root.img`,
    ]);
    expect(bootRoots(spec({ kernel: '/boot/vmlinuz' }))).toEqual([]);
  });
});

describe('knownGoodRoots of the table', () => {
  const runner = (c: string) => ({ kernel: undefined, runner: RUNNER(c), count: 2 });

  it('pins every known-good version, never one that is only running or failed', () => {
    const c = Cluster.of(3, ['microvm']);
    const roots = () => knownGoodRoots(c.sm.deployments.list());
    expect(roots()).toEqual([]);
    c.submit(runner('a'));
    expect(roots()).toEqual([]); // rolling out: not known-good yet (its VMs pin it where they run)
    c.settle();
    expect(c.dep().knownGood).toBe(1);
    expect(roots()).toEqual([RUNNER('a')]);
    c.submit(runner('b'));
    expect(roots()).toEqual([RUNNER('a')]);
    c.settle();
    expect(roots()).toEqual([RUNNER('a'), RUNNER('b')]);
    // Version 3 never starts and is reverted to version 2's spec as version 4: 3 is never pinned.
    c.submit(runner('c'), { ...FAST, autoRevert: true });
    for (let i = 0; i < 40 && c.dep().rollout!.to === 3; i++) {
      c.place();
      c.run(
        c.sm.vms
          .groupInstances('web')
          .filter((v) => v.version === 3)
          .map((v) => v.name),
      );
      c.drive();
      c.now += 600;
    }
    expect(c.dep().versions.at(-1)!.source.revertOf).toBe(3);
    c.settle();
    expect(c.dep().good).toEqual([1, 2, 4]);
    expect(roots()).toEqual([RUNNER('a'), RUNNER('b')]);
    // A second deployment's known-good roots join them, sorted and distinct.
    c.submit(runner('d'), FAST, 'db');
    for (let i = 0; i < 200 && c.dep('db').rollout!.state === 'running'; i++) {
      c.place();
      c.run();
      c.drive('db');
      c.now += 600;
    }
    expect(c.dep('db').knownGood).toBe(1);
    expect(roots()).toEqual([RUNNER('a'), RUNNER('b'), RUNNER('d')]);
  });

  it(`a version trimmed from the table (beyond DEPLOY_VERSIONS_KEPT ${DEPLOY_VERSIONS_KEPT}) is no longer pinned; the newest known-good always is`, () => {
    const c = Cluster.of(3, ['microvm']);
    const roots = () => knownGoodRoots(c.sm.deployments.list());
    c.submit(runner('a'));
    c.settle();
    c.submit(runner('b'));
    c.settle();
    expect(roots()).toEqual([RUNNER('a'), RUNNER('b')]);
    // Versions that never finish rolling out push version 1 out; version 2 (knownGood) stays.
    for (let m = 1; m < DEPLOY_VERSIONS_KEPT - 1; m++)
      c.submit({ ...runner('c'), memoryMiB: 256 + m });
    expect(c.dep().versions).toHaveLength(DEPLOY_VERSIONS_KEPT);
    expect(c.dep().versions[0]!.n).toBe(1);
    expect(roots()).toEqual([RUNNER('a'), RUNNER('b')]);
    c.submit({ ...runner('c'), memoryMiB: 300 });
    expect(c.dep().versions.map((v) => v.n)).not.toContain(1);
    expect(c.dep().good).toEqual([2]);
    expect(roots()).toEqual([RUNNER('b')]);
    for (let m = 0; m < DEPLOY_VERSIONS_KEPT; m++) c.submit({ ...runner('c'), memoryMiB: 400 + m });
    expect(c.dep().versions[0]!.n).toBe(2);
    expect(roots()).toEqual([RUNNER('b')]);
  });
});
