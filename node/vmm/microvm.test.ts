// The microvm backend on a runner closure built by the real Nix: `bin/microvm-run` boots the test
// VM under QEMU (TCG) to its console marker; `bin/microvm-shutdown` powers it off gracefully (the
// guest prints its power-down marker, which a SIGTERM to QEMU would not produce). One real boot.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeWithTools } from '../../test/tools.ts';
import { buildTestVm, TEST_VM_MARKER, TEST_VM_POWERDOWN_MARKER } from '../../test/vmm/fixture.ts';
import {
  BOOT_TIMEOUT_MS,
  shortTmpDir,
  sweep,
  VM_TOOLS,
  vmmsUnder,
  waitForMarker,
} from '../../test/vmm/helpers.ts';
import { buildRunnerClosure } from '../../test/vmm/runner.ts';
import { validateVmSpec } from '../state/vm_spec.ts';
import { microvmBackend } from './microvm.ts';
import { checkVmSpecOnNode } from './spec.ts';
import { Supervisor } from './supervisor.ts';

describeWithTools(
  [...VM_TOOLS, 'nix-build', 'nix-store'],
  'microvm backend with a runner closure built by Nix',
  () => {
    let runDir: string;
    let sup: Supervisor;
    let runner: string;

    beforeAll(async () => {
      runner = await buildRunnerClosure(await buildTestVm(), 'nixvm');
      runDir = shortTmpDir('pcr-mvm');
      sup = new Supervisor({ runDir, backends: { microvm: microvmBackend() } });
    }, 120_000);
    afterAll(async () => {
      await sup?.close();
      if (runDir !== undefined) await sweep(runDir);
    });

    it(
      'runs bin/microvm-run to the marker and stops it with bin/microvm-shutdown',
      async () => {
        const r = validateVmSpec({ version: 1, name: 'nixvm', runner, memoryMiB: 128 });
        if (!r.ok) throw new Error(r.errors[0]!.message);
        expect(await checkVmSpecOnNode(r.spec)).toEqual([]);
        await sup.launch(r.spec, 1);
        expect(sup.get('nixvm')).toMatchObject({ backend: 'microvm', phase: 'running' });
        await waitForMarker(sup.paths('nixvm').console, TEST_VM_MARKER);
        expect(await sup.handle('nixvm')!.status()).toBe('running');
        expect(await sup.stop('nixvm', 20_000)).toMatchObject({ kind: 'stopped', code: 0 });
        expect(await sup.consoleLog('nixvm')).toContain(TEST_VM_POWERDOWN_MARKER);
        expect(vmmsUnder(runDir)).toEqual([]);
      },
      BOOT_TIMEOUT_MS * 2,
    );

    it('refuses on the node a runner path without bin/microvm-run', async () => {
      const r = validateVmSpec({
        version: 1,
        name: 'empty',
        runner: '/nix/store/00000000000000000000000000000000-missing',
      });
      if (!r.ok) throw new Error(r.errors[0]!.message);
      const issues = await checkVmSpecOnNode(r.spec);
      expect(issues.map((i) => i.path)).toEqual(['runner']);
      expect(issues[0]!.message).toContain('bin/microvm-run does not exist on this node');
    });
  },
);
