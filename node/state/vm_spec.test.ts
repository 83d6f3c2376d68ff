// The VM spec: defaults, every bound at its edge, unknown fields, and errors that name the field.

import { describe, expect, it } from 'vitest';
import {
  DEFAULT_CMDLINE,
  parseVmSpec,
  specHash,
  VM_BACKOFF_MS_MAX,
  VM_CMDLINE_BYTES_MAX,
  VM_DISKS_MAX,
  VM_MEMORY_MIB_MAX,
  VM_MEMORY_MIB_MIN,
  VM_NAME_LENGTH_MAX,
  VM_PATH_BYTES_MAX,
  VM_RESTART_ATTEMPTS_MAX,
  VM_VCPUS_MAX,
  validateVmSpec,
} from './vm_spec.ts';

const BASE = { version: 1, name: 'web-1', kernel: '/k' };
const RUNNER = '/nix/store/0c6lw3rq0qvd4n4ys4fvnnbd5bxxc0nk-microvm-run-db';

function errors(input: unknown): string[] {
  const r = validateVmSpec(input);
  return r.ok ? [] : r.errors.map((e) => e.message);
}

describe('validateVmSpec', () => {
  it('fills in the defaults of a minimal kernel spec', () => {
    expect(validateVmSpec(BASE)).toEqual({
      ok: true,
      spec: {
        version: 1,
        name: 'web-1',
        kernel: '/k',
        cmdline: DEFAULT_CMDLINE,
        disks: [],
        vcpus: 1,
        memoryMiB: 256,
        network: { mode: 'none' },
        restart: { policy: 'never' },
        hypervisor: 'qemu',
      },
    });
  });

  it('accepts a runner spec and the full restart policy', () => {
    const r = validateVmSpec({
      version: 1,
      name: 'db',
      runner: RUNNER,
      restart: { policy: 'on-failure' },
    });
    expect(r).toMatchObject({
      ok: true,
      spec: {
        runner: RUNNER,
        restart: {
          policy: 'on-failure',
          maxAttempts: 5,
          backoffInitialMs: 1000,
          backoffMaxMs: 60_000,
        },
      },
    });
  });

  it('refuses unknown fields at every level, naming them', () => {
    expect(errors({ ...BASE, memory: 512 })).toEqual([
      expect.stringMatching(/^memory: unknown field/),
    ]);
    expect(errors({ ...BASE, network: { mode: 'tap', bridge: 'br0', bridgee: 'x' } })).toEqual([
      expect.stringMatching(/^network\.bridgee: unknown field/),
    ]);
    expect(errors({ ...BASE, disks: [{ path: '/d', ro: true }] })).toEqual([
      expect.stringMatching(/^disks\[0\]\.ro: unknown field/),
    ]);
  });

  it('requires a version it knows, a name, and exactly one of runner and kernel', () => {
    expect(errors({ name: 'a', kernel: '/k' })).toEqual([
      'version: is required (the current version is 1)',
    ]);
    expect(errors({ ...BASE, version: 2 })).toEqual([
      'version: 2 is not supported (the only version is 1)',
    ]);
    expect(errors({ version: 1, kernel: '/k' })).toEqual(['name: is required']);
    expect(errors({ version: 1, name: 'a' })).toEqual([
      'kernel: one of runner (a microvm.nix runner store path) or kernel is required',
    ]);
    expect(errors({ ...BASE, runner: RUNNER })).toEqual([
      'runner: give either runner or kernel, not both',
    ]);
    expect(errors({ version: 1, name: 'a', runner: '/tmp/x' })).toEqual([
      'runner: "/tmp/x" is not a Nix store path (/nix/store/<hash>-<name>)',
    ]);
    expect(
      errors({ version: 1, name: 'a', runner: RUNNER, cmdline: 'x', hypervisor: 'qemu' }),
    ).toEqual([
      'cmdline: is not allowed with runner (the runner closure fixes it)',
      'hypervisor: is not allowed with runner (the runner closure fixes it)',
    ]);
    expect(errors('nope')).toEqual(['(spec): must be a JSON object, got string "nope"']);
  });

  it('holds every bound at its edge (VM_NAME_LENGTH_MAX, VM_VCPUS_MAX, VM_MEMORY_MIB_MIN/MAX, VM_CMDLINE_BYTES_MAX, VM_DISKS_MAX, VM_PATH_BYTES_MAX)', () => {
    expect(errors({ ...BASE, name: 'a'.repeat(VM_NAME_LENGTH_MAX) })).toEqual([]);
    expect(errors({ ...BASE, name: 'a'.repeat(VM_NAME_LENGTH_MAX + 1) })[0]).toMatch(
      /^name: must be 1 to 40 characters/,
    );
    expect(errors({ ...BASE, name: 'Web_1' })[0]).toMatch(/^name: "Web_1" must be lower-case/);
    expect(errors({ ...BASE, vcpus: VM_VCPUS_MAX })).toEqual([]);
    expect(errors({ ...BASE, vcpus: VM_VCPUS_MAX + 1 })).toEqual([
      'vcpus: 65 is above the maximum 64 (VM_VCPUS_MAX)',
    ]);
    expect(errors({ ...BASE, vcpus: 0 })).toEqual(['vcpus: 0 is below the minimum 1']);
    expect(errors({ ...BASE, vcpus: 1.5 })).toEqual(['vcpus: must be an integer, got number 1.5']);
    expect(errors({ ...BASE, memoryMiB: VM_MEMORY_MIB_MAX })).toEqual([]);
    expect(errors({ ...BASE, memoryMiB: 1_048_576 })).toEqual([
      'memoryMiB: 1048576 is above the maximum 65536 (VM_MEMORY_MIB_MAX)',
    ]);
    expect(errors({ ...BASE, memoryMiB: VM_MEMORY_MIB_MIN - 1 })).toEqual([
      'memoryMiB: 31 is below the minimum 32',
    ]);
    expect(errors({ ...BASE, cmdline: 'x'.repeat(VM_CMDLINE_BYTES_MAX) })).toEqual([]);
    expect(errors({ ...BASE, cmdline: 'x'.repeat(VM_CMDLINE_BYTES_MAX + 1) })[0]).toMatch(
      /^cmdline: is 4097 bytes, above the maximum 4096/,
    );
    const disks = (n: number) => Array.from({ length: n }, (_, i) => ({ path: `/d${i}` }));
    expect(errors({ ...BASE, disks: disks(VM_DISKS_MAX) })).toEqual([]);
    expect(errors({ ...BASE, disks: disks(VM_DISKS_MAX + 1) })[0]).toMatch(
      /^disks: has 17 entries, above the maximum 16/,
    );
    expect(errors({ ...BASE, kernel: `/${'k'.repeat(VM_PATH_BYTES_MAX)}` })[0]).toMatch(
      /^kernel: is longer than 4096 bytes/,
    );
    expect(errors({ ...BASE, kernel: 'vmlinux' })).toEqual([
      'kernel: "vmlinux" must be an absolute path',
    ]);
    expect(errors({ ...BASE, disks: [{ path: '/a,b' }] })).toEqual([
      'disks[0].path: "/a,b" must not contain a comma or NUL',
    ]);
  });

  it('checks the restart policy (VM_RESTART_ATTEMPTS_MAX, VM_BACKOFF_MS_MAX, max >= initial)', () => {
    const r = (restart: unknown) => errors({ ...BASE, restart });
    expect(
      r({
        policy: 'always',
        maxAttempts: VM_RESTART_ATTEMPTS_MAX,
        backoffMaxMs: VM_BACKOFF_MS_MAX,
      }),
    ).toEqual([]);
    expect(r({ policy: 'always', maxAttempts: VM_RESTART_ATTEMPTS_MAX + 1 })).toEqual([
      'restart.maxAttempts: 1001 is above the maximum 1000 (VM_RESTART_ATTEMPTS_MAX)',
    ]);
    expect(r({ policy: 'on-failure', maxAttempts: 0 })).toEqual([
      'restart.maxAttempts: 0 (unlimited) is allowed only with policy "always"',
    ]);
    expect(r({ policy: 'always', backoffInitialMs: 5000, backoffMaxMs: 100 })).toEqual([
      'restart.backoffMaxMs: 100 is below restart.backoffInitialMs 5000',
    ]);
    expect(r({ policy: 'always', backoffMaxMs: VM_BACKOFF_MS_MAX + 1 })[0]).toMatch(
      /^restart\.backoffMaxMs: 3600001 is above/,
    );
    expect(r({ policy: 'sometimes' })).toEqual([
      'restart.policy: "sometimes" must be "never", "on-failure" or "always"',
    ]);
    expect(r({ policy: 'never', maxAttempts: 3 })[0]).toMatch(
      /^restart\.maxAttempts: unknown field/,
    );
  });

  it('checks the network', () => {
    const n = (network: unknown) => errors({ ...BASE, network });
    expect(n({ mode: 'tap', bridge: 'br0', mac: '52:54:00:12:34:56' })).toEqual([]);
    expect(n({ mode: 'tap' })).toEqual([
      'network.bridge: is required for mode "tap" (the bridge the tap joins)',
    ]);
    expect(n({ mode: 'tap', bridge: 'a-bridge-name-too-long' })[0]).toMatch(
      /^network\.bridge: "a-bridge-name-too-long" is not an interface name/,
    );
    expect(n({ mode: 'tap', bridge: 'br0', mac: '01:00:5e:00:00:01' })).toEqual([
      'network.mac: 01:00:5e:00:00:01 is a multicast address; use a unicast one',
    ]);
    expect(n({ mode: 'vde' })).toEqual(['network.mode: "vde" must be "none" or "tap"']);
  });

  it('collects every error, not only the first', () => {
    expect(
      errors({ version: 1, name: 'X', kernel: '/k', vcpus: 0, memoryMiB: 1e9, extra: 1 }),
    ).toHaveLength(4);
  });

  it('parses JSON text and reports a syntax error as an error of the spec', () => {
    expect(parseVmSpec(JSON.stringify(BASE)).ok).toBe(true);
    const bad = parseVmSpec('{"version": 1,');
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.errors[0]!.message).toMatch(/^\(spec\): not valid JSON/);
  });

  it('hashes equal specs equally, whatever the key order, and different specs differently', () => {
    const a = validateVmSpec({ ...BASE, vcpus: 2 });
    const b = validateVmSpec({ vcpus: 2, kernel: '/k', name: 'web-1', version: 1 });
    const c = validateVmSpec({ ...BASE, vcpus: 3 });
    if (!a.ok || !b.ok || !c.ok) throw new Error('spec');
    expect(specHash(a.spec)).toBe(specHash(b.spec));
    expect(specHash(a.spec)).not.toBe(specHash(c.spec));
  });

  it('keeps the hash of a spec without health checks (rows and runs recorded before checks existed)', () => {
    // Pinned from the code before health checks: a spec without them hashes as it always did.
    const tap = validateVmSpec({ ...BASE, network: { mode: 'tap', bridge: 'br0' } });
    const group = validateVmSpec({ version: 1, name: 'db', runner: RUNNER, count: 2 });
    const empty = validateVmSpec({ ...BASE, network: { mode: 'tap', bridge: 'br0' }, health: [] });
    if (!tap.ok || !group.ok || !empty.ok) throw new Error('spec');
    expect(specHash(tap.spec)).toBe(
      'c5707d8ae78c2f2cf83359e75c732531d9c842bf894693102239ed4dcb12e4e9',
    );
    expect(specHash(group.spec)).toBe(
      '0b2c8688c3823f56595803642bfcdad3c3d3c95506dc651522b4e87cfeec40f1',
    );
    expect('health' in empty.spec).toBe(false);
    expect(specHash(empty.spec)).toBe(specHash(tap.spec));
    const checked = validateVmSpec({
      ...BASE,
      network: { mode: 'tap', bridge: 'br0' },
      health: [{ console: 'ready' }],
    });
    if (!checked.ok) throw new Error('spec');
    expect(specHash(checked.spec)).not.toBe(specHash(tap.spec));
  });
});
