import { describe, expect, it } from 'vitest';
import { node, view } from '../../test/sched/fixture.ts';
import { demandOf, requiredBackend } from './demand.ts';
import { place } from './place.ts';
import { validatePlacementFields } from './spec.ts';

const runner = '/nix/store/00000000000000000000000000000000-web-runner';

describe('demandOf: from a spec to a demand', () => {
  it('a runner needs the microvm backend and is its own closure; a kernel spec its hypervisor', () => {
    expect(requiredBackend({ name: 'a', runner, vcpus: 1, memoryMiB: 256 })).toBe('microvm');
    expect(requiredBackend({ name: 'a', vcpus: 1, memoryMiB: 256 })).toBe('qemu');
    expect(
      requiredBackend({ name: 'a', hypervisor: 'firecracker', vcpus: 1, memoryMiB: 256 }),
    ).toBe('firecracker');
  });

  it('carries the validated fields through to a placement', () => {
    const input = {
      count: 2,
      constraints: [{ attribute: 'label.zone', operator: '=', value: 'a' }],
    };
    const r = validatePlacementFields(input);
    if (!r.ok) throw new Error('valid fields refused');
    const d = demandOf({ name: 'web', runner, vcpus: 2, memoryMiB: 512 }, r.fields, 42);
    expect(d).toMatchObject({
      group: 'web',
      generation: 42,
      count: 2,
      backend: 'microvm',
      closure: runner,
      resources: { cpus: 2, memoryMiB: 512 },
    });
    const nodes = [
      node('a', { labels: { zone: 'a' } }),
      node('b', { labels: { zone: 'a' } }),
      node('c', { labels: { zone: 'b' } }),
    ];
    const placed = place(view(nodes), [d], 1);
    expect(placed.placements.map((p) => [p.instance, p.generation])).toEqual([
      ['web-0', 42],
      ['web-1', 42],
    ]);
    expect(placed.placements.map((p) => p.node).sort()).toEqual(['a', 'b']);
  });
});
