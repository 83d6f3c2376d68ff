// The node-side check of a VM spec: the files it names exist on this node, with the access the
// VM needs. The spec itself (type, bounds, pure validation, hash) is node/state/vm_spec.ts.

import { access, constants, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { SpecIssue, VmSpec } from '../state/vm_spec.ts';

/**
 * The node-side check before a start: the files the spec names exist here and are readable; a
 * runner has an executable bin/microvm-run (call it after the closure is present).
 */
export async function checkVmSpecOnNode(spec: VmSpec): Promise<SpecIssue[]> {
  const issues: SpecIssue[] = [];
  const need = async (path: string, file: string, mode: number, what: string) => {
    try {
      const s = await stat(file);
      if (!s.isFile()) throw new Error('not a regular file');
      await access(file, mode);
    } catch (e) {
      const why =
        (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : (e as Error).message;
      issues.push({
        code: 'SPEC_INVALID',
        path,
        message: `${path}: ${file} ${why} on this node (${what})`,
      });
    }
  };
  if (spec.runner !== undefined) {
    await need(
      'runner',
      join(spec.runner, 'bin', 'microvm-run'),
      constants.X_OK,
      'an executable bin/microvm-run is required',
    );
  }
  if (spec.kernel !== undefined)
    await need('kernel', spec.kernel, constants.R_OK, 'the kernel image');
  if (spec.initrd !== undefined) await need('initrd', spec.initrd, constants.R_OK, 'the initrd');
  for (const [i, d] of spec.disks.entries()) {
    await need(
      `disks[${i}].path`,
      d.path,
      d.readOnly ? constants.R_OK : constants.R_OK | constants.W_OK,
      'a disk image',
    );
  }
  return issues;
}
