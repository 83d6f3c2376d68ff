// What the real-node deployment tests share (node/deploy_cluster.test.ts, deploy_plan_cluster,
// deploy_watch, node/cli/vm_health.test.ts): waiting for a node to record itself (a VM is placed
// only on a member of the table), reading a deployment and its instances, and waiting for a
// rollout to end. Not used by the product.

import type { Deployment } from '../../node/state/deployments.ts';
import type { VmEntry } from '../../node/state/vms.ts';
import { type NodeProc, request, until } from '../procs.ts';

/** Until the node's own record (with its addresses) is committed: it leads and placement may use it. */
export async function recorded(n: NodeProc): Promise<void> {
  await until(
    async () => {
      const r = await request(n, n, { op: 'members' }, 3000).catch(() => undefined);
      if (r?.ok !== true) return undefined;
      const me = (r.members as { id: string; addrs: string[] }[]).find((m) => m.id === n.id);
      return me !== undefined && me.addrs.length > 0 ? true : undefined;
    },
    30_000,
    'the node to record itself in the member table',
  );
}

/** The deployment as the node's table holds it, or undefined (none, or no answer). */
export async function deploymentOf(n: NodeProc, name = 'web'): Promise<Deployment | undefined> {
  const r = await request(n, n, { op: 'deploy.get', name }, 5000).catch(() => undefined);
  return r?.ok === true ? (r.deployment as Deployment) : undefined;
}

/** The group's instances, sorted by name. */
export async function instancesOf(n: NodeProc, group = 'web'): Promise<VmEntry[]> {
  const r = await request(n, n, { op: 'vm.list', group }, 5000);
  if (!r.ok) throw new Error(r.error.message);
  return (r.vms as VmEntry[]).sort((a, b) => a.name.localeCompare(b.name));
}

/** Until the rollout to version `to` succeeded; a failed one throws with its reason and rows. */
export function rolledOut(n: NodeProc, to: number, name = 'web'): Promise<Deployment> {
  return until(
    async () => {
      const d = await deploymentOf(n, name);
      if (d?.rollout?.to !== to) return undefined;
      if (d.rollout.state === 'failed')
        throw new Error(
          `v${to} failed: ${d.rollout.reason}; instances: ${JSON.stringify(await instancesOf(n, name))}`,
        );
      return d.rollout.state === 'succeeded' ? d : undefined;
    },
    120_000,
    `the rollout of ${name} to v${to} to succeed`,
  );
}
