// The node-side check of a VM spec: each file the spec names must exist here.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateVmSpec } from '../state/vm_spec.ts';
import { checkVmSpecOnNode } from './spec.ts';

const BASE = { version: 1, name: 'web-1', kernel: '/k' };

describe('checkVmSpecOnNode', () => {
  it('names each file that is missing on this node', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pcr-spec-'));
    writeFileSync(join(dir, 'vmlinux'), 'k');
    const r = validateVmSpec({
      ...BASE,
      kernel: join(dir, 'vmlinux'),
      initrd: join(dir, 'nope.img'),
      disks: [{ path: join(dir, 'disk') }],
    });
    if (!r.ok) throw new Error('spec');
    const issues = await checkVmSpecOnNode(r.spec);
    expect(issues.map((i) => i.path)).toEqual(['initrd', 'disks[0].path']);
    expect(issues[0]!.message).toBe(
      `initrd: ${join(dir, 'nope.img')} does not exist on this node (the initrd)`,
    );
  });
});
