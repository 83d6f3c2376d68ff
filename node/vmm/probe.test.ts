// Probing what this node can run, with the real QEMU: the accelerator probe is a boot (a KVM guest
// must print the kernel's first line), the same detection sees a TCG boot, and the capabilities
// object is serializable. Two short partial boots (no initramfs; killed at the first line or at
// ACCEL_PROBE_TIMEOUT_MS).

import { existsSync } from 'node:fs';
import { expect, it } from 'vitest';
import { describeWithTools } from '../../test/tools.ts';
import { validateVmSpec } from '../state/vm_spec.ts';
import { defaultBackends, probeBackends } from './probe.ts';
import { ACCEL_PROBE_TIMEOUT_MS, bootsTo, newestHostKernel, qemuArgs } from './qemu.ts';

describeWithTools(['qemu-system-x86_64'], 'probeBackends with the real QEMU', () => {
  it('detects a boot under TCG by its console, and no boot for a needle the kernel never prints', async () => {
    const kernel = newestHostKernel();
    if (kernel === undefined)
      throw new Error('no /boot/vmlinuz-*: apt-get install linux-image-amd64');
    const [seen, unseen] = await Promise.all([
      bootsTo('qemu-system-x86_64', kernel, 'tcg', 'Linux version', 60_000),
      bootsTo('qemu-system-x86_64', kernel, 'tcg', 'PCR-NEVER-PRINTED', 1500),
    ]);
    expect(seen).toBe(true);
    expect(unseen).toBe(false);
  }, 70_000);

  it(
    'advertises qemu with the accelerator a boot proved, microvm, and the absent binaries as unavailable',
    async () => {
      const caps = await probeBackends(
        defaultBackends({
          cloudHypervisorBinary: '/nonexistent/cloud-hypervisor',
          firecrackerBinary: '/nonexistent/firecracker',
        }),
      );
      expect(JSON.parse(JSON.stringify(caps))).toEqual(caps);
      expect(caps.backends.qemu).toMatchObject({
        available: true,
        version: expect.stringMatching(/^\d+\.\d+\.\d+$/),
      });
      expect(['kvm', 'tcg']).toContain(caps.backends.qemu.accelerator);
      if (existsSync('/dev/kvm') && caps.backends.qemu.accelerator === 'tcg') {
        // This machine's case: /dev/kvm opens, but a KVM guest prints nothing in time.
        expect(caps.backends.qemu.reason).toContain(
          `no kernel line within ${ACCEL_PROBE_TIMEOUT_MS} ms`,
        );
      }
      expect(caps.backends.microvm).toEqual({ available: true });
      expect(caps.backends['cloud-hypervisor']).toMatchObject({
        available: false,
        reason: expect.stringContaining('not found'),
      });
      expect(caps.backends.firecracker).toMatchObject({ available: false });
    },
    ACCEL_PROBE_TIMEOUT_MS + 20_000,
  );
});

it('builds the -M microvm command line from a spec, with disks and a tap', () => {
  const r = validateVmSpec({
    version: 1,
    name: 'a',
    kernel: '/k',
    initrd: '/i',
    cmdline: 'console=ttyS0',
    vcpus: 2,
    memoryMiB: 512,
    disks: [{ path: '/d.img', readOnly: true }],
    network: { mode: 'tap', bridge: 'br0', mac: '52:54:00:00:00:01' },
  });
  if (!r.ok) throw new Error('spec');
  const args = qemuArgs(r.spec, {
    accel: 'tcg',
    qmpSocket: '/run/a/vmm.sock',
    tap: 'pcr0123456789',
  }).join(' ');
  expect(args).toContain(
    '-M microvm,x-option-roms=off,isa-serial=on,rtc=on -accel tcg -m 512 -smp 2',
  );
  expect(args).toContain(
    '-kernel /k -initrd /i -append console=ttyS0 -serial stdio -qmp unix:/run/a/vmm.sock,server=on,wait=off',
  );
  expect(args).toContain(
    '-drive id=d0,file=/d.img,format=raw,if=none,readonly=on -device virtio-blk-device,drive=d0',
  );
  expect(args).toContain(
    '-netdev tap,id=n0,ifname=pcr0123456789,script=no,downscript=no -device virtio-net-device,netdev=n0,mac=52:54:00:00:00:01',
  );
});
