// A microvm.nix-shaped runner closure built with the real Nix (no nixpkgs): the test VM's kernel and
// initrd added to the store, and a derivation whose bin/microvm-run starts the host's QEMU on them
// (QMP socket in the working directory, as microvm.nix runners do) and whose bin/microvm-shutdown
// presses the ACPI power button over that socket. Every nix call goes through nixEnv().

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { findTool, nixEnv } from '../tools.ts';
import type { TestVm } from './fixture.ts';

const exec = promisify(execFile);

/** Adds the kernel and initrd to the store and builds the runner; returns its store path. */
export async function buildRunnerClosure(vm: TestVm, name: string): Promise<string> {
  const env = nixEnv();
  const add = async (file: string) =>
    (await exec('nix-store', ['--add', file], { env, maxBuffer: 1 << 20 })).stdout.trim();
  const kernel = await add(vm.kernel);
  const initrd = await add(vm.initrd);
  const qemu = findTool('qemu-system-x86_64');
  if (qemu === undefined) throw new Error('qemu-system-x86_64 not found');
  const run = [
    '#!/bin/sh',
    `exec ${qemu} -name ${name} -M microvm,x-option-roms=off,isa-serial=on,rtc=on -accel tcg -m 128 -smp 1 \\`,
    '  -nodefaults -no-user-config -nographic -no-reboot \\',
    `  -kernel ${kernel} -initrd ${initrd} -append '${vm.cmdline}' \\`,
    '  -serial stdio -qmp unix:microvm.sock,server=on,wait=off',
    '',
  ].join('\n');
  // microvm.nix's shutdown script talks QMP with socat; here node does (no socat on these machines).
  const qmpPowerdown =
    "const s=require('net').createConnection('microvm.sock');" +
    's.on(\'connect\',()=>s.write(\'{"execute":"qmp_capabilities"}\\n{"execute":"system_powerdown"}\\n\'));' +
    "s.on('data',d=>{if(String(d).includes('POWERDOWN'))s.end()});setTimeout(()=>process.exit(1),10000).unref();";
  const shutdown = [
    '#!/bin/sh',
    `exec ${process.execPath} -e '${qmpPowerdown.replaceAll("'", "'\\''")}'`,
    '',
  ].join('\n');
  const expr = `derivation {
    name = ${JSON.stringify(`microvm-run-${name}`)};
    system = builtins.currentSystem;
    builder = "/bin/sh";
    kernel = builtins.storePath ${JSON.stringify(kernel)};
    initrd = builtins.storePath ${JSON.stringify(initrd)};
    run = ${JSON.stringify(run)};
    shutdown = ${JSON.stringify(shutdown)};
    args = [ "-c" "/bin/mkdir -p $out/bin && printf '%s' \\"$run\\" > $out/bin/microvm-run && printf '%s' \\"$shutdown\\" > $out/bin/microvm-shutdown && /bin/chmod +x $out/bin/microvm-run $out/bin/microvm-shutdown" ];
  }`;
  const { stdout } = await exec('nix-build', ['--no-out-link', '-E', expr], {
    env,
    maxBuffer: 1 << 20,
  });
  return stdout.trim().split('\n').at(-1)!;
}
