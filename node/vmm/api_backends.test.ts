// The cloud-hypervisor and firecracker backends against a TEST DOUBLE of their HTTP APIs
// (test/api_double.mjs), because neither binary can be installed here. What this proves: the
// request sequences and bodies follow the published API shapes, launch/status/stop/adoption work
// through the supervisor, and the console is the VMM's stdout. What it does not prove: that a real
// cloud-hypervisor or firecracker boots the guest (docs/vmm.md, "What was verified where").

import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../test/until.ts';
import { shortTmpDir, sweep } from '../../test/vmm/helpers.ts';
import { type VmSpec, validateVmSpec } from '../state/vm_spec.ts';
import type { Backend } from './backend.ts';
import { chVmConfig, cloudHypervisorBackend } from './cloud_hypervisor.ts';
import { fcRequests, firecrackerBackend } from './firecracker.ts';
import { Supervisor } from './supervisor.ts';

const DOUBLE = fileURLToPath(new URL('../../test/vmm/api_double.mjs', import.meta.url));

interface Case {
  readonly kind: 'ch' | 'fc';
  readonly hypervisor: 'cloud-hypervisor' | 'firecracker';
  readonly make: (binary: string) => Backend;
  readonly expected: (spec: VmSpec) => { method: string; url: string; body?: unknown }[];
  readonly stopRequests: { method: string; url: string; body?: unknown }[];
}

const CASES: Case[] = [
  {
    kind: 'ch',
    hypervisor: 'cloud-hypervisor',
    make: (binary) => cloudHypervisorBackend({ binary }),
    expected: (spec) => [
      { method: 'GET', url: '/api/v1/vmm.ping' },
      { method: 'PUT', url: '/api/v1/vm.create', body: chVmConfig(spec, undefined) },
      { method: 'PUT', url: '/api/v1/vm.boot' },
      { method: 'GET', url: '/api/v1/vm.info' },
    ],
    stopRequests: [{ method: 'PUT', url: '/api/v1/vm.power-button' }],
  },
  {
    kind: 'fc',
    hypervisor: 'firecracker',
    make: (binary) => firecrackerBackend({ binary }),
    expected: (spec) => [
      { method: 'GET', url: '/' },
      ...fcRequests(spec, undefined).map(([url, body]) => ({ method: 'PUT', url, body })),
      { method: 'GET', url: '/' },
    ],
    stopRequests: [{ method: 'PUT', url: '/actions', body: { action_type: 'SendCtrlAltDel' } }],
  },
];

for (const c of CASES) {
  describe(`${c.hypervisor} backend against a test double of its API`, () => {
    let dir: string;
    let binary: string;
    let logFile: string;
    let spec: VmSpec;
    const sups: Supervisor[] = [];
    const requests = () =>
      readFileSync(logFile, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { method: string; url: string; body?: unknown });

    beforeAll(() => {
      dir = shortTmpDir(`pcr-${c.kind}`);
      binary = join(dir, c.hypervisor);
      writeFileSync(binary, `#!/bin/sh\nexec ${process.execPath} ${DOUBLE} ${c.kind} "$@"\n`);
      chmodSync(binary, 0o755);
      logFile = join(dir, 'requests.jsonl');
      process.env.PCR_DOUBLE_LOG = logFile;
      writeFileSync(join(dir, 'vmlinux'), 'not a kernel: the double never boots it');
      writeFileSync(join(dir, 'disk.img'), Buffer.alloc(4096));
      const r = validateVmSpec({
        version: 1,
        name: `${c.kind}vm`,
        kernel: join(dir, 'vmlinux'),
        cmdline: 'console=ttyS0 reboot=k panic=1',
        vcpus: 2,
        memoryMiB: 512,
        disks: [{ path: join(dir, 'disk.img'), readOnly: true }],
        hypervisor: c.hypervisor,
      });
      if (!r.ok) throw new Error(r.errors[0]!.message);
      spec = r.spec;
    });
    afterEach(async () => {
      for (const s of sups.splice(0)) await s.close();
      writeFileSync(logFile, '');
    });
    afterAll(async () => {
      delete process.env.PCR_DOUBLE_LOG;
      await sweep(join(dir, 'run'));
      await sweep(dir);
    });

    it('probes the binary for its version', async () => {
      const p = await c.make(binary).probe();
      expect(p.version).toMatch(/^\d+\.\d+\.\d+$/);
      expect(p.available).toBe(p.reason === undefined);
      const missing = await c.make(join(dir, 'absent')).probe();
      expect(missing).toMatchObject({
        available: false,
        reason: expect.stringContaining('not found'),
      });
    });

    it('configures and boots through the API in the documented order, then stops gracefully', async () => {
      const sup = new Supervisor({
        runDir: join(dir, 'run'),
        backends: { [c.hypervisor]: c.make(binary) },
      });
      sups.push(sup);
      await sup.launch(spec, 1);
      expect(sup.get(spec.name)).toMatchObject({ backend: c.hypervisor, phase: 'running' });
      expect(await sup.handle(spec.name)!.status()).toBe('running');
      expect(requests()).toEqual(c.expected(spec));
      await until(
        async () => (await sup.consoleLog(spec.name)).includes('DOUBLE-GUEST-BOOTED'),
        5000,
        'the console line',
      );

      expect(await sup.stop(spec.name, 5000)).toMatchObject({ kind: 'stopped', code: 0 });
      expect(requests().slice(c.expected(spec).length)).toEqual(c.stopRequests);
    });

    it('is adopted by a new supervisor through its API socket', async () => {
      const first = new Supervisor({
        runDir: join(dir, 'run'),
        backends: { [c.hypervisor]: c.make(binary) },
      });
      sups.push(first);
      await first.launch(spec, 2);
      const pid = first.get(spec.name)!.pid;
      await first.close();
      const second = new Supervisor({
        runDir: join(dir, 'run'),
        backends: { [c.hypervisor]: c.make(binary) },
      });
      sups.push(second);
      await second.recover();
      expect(second.get(spec.name)).toMatchObject({ phase: 'running', pid, adopted: true });
      expect(await second.stop(spec.name, 5000)).toMatchObject({ kind: 'stopped' });
    });
  });
}
