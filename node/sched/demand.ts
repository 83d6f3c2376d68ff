// From a VM spec to the demand placement works on: the backend a spec needs, its resources, and
// its validated placement fields. The shape of the spec is structural (the validator is moving to
// node/state/); the leader loop (next) calls this for each group with unplaced instances.

import type { PlacementFields } from './spec.ts';
import type { Demand } from './types.ts';

/** The spec fields placement reads (a subset of a validated VmSpec). */
export interface SpecForPlacement {
  readonly name: string;
  readonly runner?: string;
  readonly hypervisor?: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
}

/** A runner brings its own hypervisor (the `microvm` backend); a kernel spec names one, qemu by default. */
export function requiredBackend(spec: SpecForPlacement): string {
  return spec.runner !== undefined ? 'microvm' : (spec.hypervisor ?? 'qemu');
}

export function demandOf(
  spec: SpecForPlacement,
  fields: PlacementFields,
  generation: number,
  failedNodes: Readonly<Record<string, string>> = {},
): Demand {
  return {
    group: spec.name,
    generation,
    count: fields.count,
    resources: { cpus: spec.vcpus, memoryMiB: spec.memoryMiB },
    backend: requiredBackend(spec),
    constraints: fields.constraints,
    affinities: fields.affinities,
    ...(fields.spread === undefined ? {} : { spread: fields.spread }),
    allowSharing: fields.allowSharing,
    packing: fields.packing,
    ...(spec.runner === undefined ? {} : { closure: spec.runner }),
    failedNodes,
  };
}
