// The store roots the deployment table asks every member to keep (docs/deploy.md, docs/store.md
// "Pins"): the boot paths of each deployment's known-good versions, so a rollback or an
// auto-revert never finds its closure evicted from a member's node-local store. Pure: the daemon
// gives the result to the LocalStore's `pins` beside the VMs' runners (read at every eviction and
// `pcr store gc`).

import type { Deployment } from './deployments.ts';
import type { VmSpec } from './vm_spec.ts';

/** `/nix/store/<32 nix32 chars>-<name>`: the store path a file path lies in (its root). */
const STORE_ROOT = /^\/nix\/store\/[0123456789abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+\-._?=]+/;

/**
 * The store path `path` lies in (a runner is one; a kernel, an initrd or a disk image may be a
 * file inside one), or undefined for a path outside the store (`/boot/vmlinuz`): nothing to pin.
 */
export function storeRootOf(path: string): string | undefined {
  const m = STORE_ROOT.exec(path);
  if (m === null) return undefined;
  const rest = path.slice(m[0].length);
  return rest === '' || rest.startsWith('/') ? m[0] : undefined;
}

/** The store roots a spec boots from: its runner, or its kernel, initrd and disks. */
export function bootRoots(spec: VmSpec): string[] {
  const files = [spec.runner, spec.kernel, spec.initrd, ...spec.disks.map((d) => d.path)];
  return files.flatMap((f) => {
    const root = f === undefined ? undefined : storeRootOf(f);
    return root === undefined ? [] : [root];
  });
}

/**
 * The boot roots of every known-good version the table holds (`good`, and `knownGood`, which is
 * kept beyond the newest DEPLOY_VERSIONS_KEPT), sorted and distinct. A version the table no
 * longer keeps is no rollback target: its closure may go.
 */
export function knownGoodRoots(deployments: Iterable<Deployment>): string[] {
  const out = new Set<string>();
  for (const d of deployments) {
    const good = new Set(d.good);
    if (d.knownGood !== undefined) good.add(d.knownGood);
    for (const v of d.versions) if (good.has(v.n)) for (const r of bootRoots(v.spec)) out.add(r);
  }
  return [...out].sort();
}
