// The deployment requests of the API (docs/deploy.md, "API and CLI"): deploy.submit, deploy.get,
// deploy.list, deploy.promote, deploy.rollback, deploy.stop, deploy.rm. The member fills in the
// clock (`atMs`); the state machine validates the spec and the update policy and answers with the
// deployment as the table holds it. Errors as the other state requests: `invalid` -> INVALID, `notFound` -> NOT_FOUND.
// Building, evaluating and pushing the closure happen in the client (`pcr deploy`), never here.
// A spec no node could ever hold is refused before anything is committed (UNPLACEABLE), by the
// very check vm.run makes (placement_handlers.ts neverPlaceable).

import { plural } from '../plural.ts';
import { bootRoots } from '../state/deploy_pins.ts';
import { rollbackTarget } from '../state/deployments.ts';
import { type ApiDeps, answer } from './deps.ts';
import { neverPlaceable } from './placement_handlers.ts';
import type { RequestOf } from './requests.ts';
import { type ApiResponse, apiError } from './wire.ts';

/**
 * What deploy.submit of this answers before anything is committed, on this member's state: a
 * valid spec no node could ever hold is UNPLACEABLE (unless it is the newest version again: placement
 * is not asked then, since `pcr deploy watch` re-submits it after every commit, also once the
 * cluster shrank below what it needs); then the state machine's own refusal
 * (DeploymentTable.previewSubmit, the function its apply runs) is INVALID; else ok, `noop` with the
 * version for the newest again. deploy.check answers this; deploy.submit acts on it.
 */
function admission(deps: ApiDeps, req: RequestOf<'deploy.submit' | 'deploy.check'>): ApiResponse {
  const p = deps.node.sm.deployments.previewSubmit(req, deps.node.sm.vms);
  if (p.ok && p.noop !== undefined) return { ok: true, noop: true, version: p.noop };
  const never = p.spec === undefined ? undefined : neverPlaceable(deps, p.spec);
  if (never !== undefined) return apiError('UNPLACEABLE', never);
  return p.ok ? { ok: true } : apiError('INVALID', p.message);
}

export async function handleDeploySubmit(
  deps: ApiDeps,
  req: RequestOf<'deploy.submit'>,
): Promise<ApiResponse> {
  // Refused as unplaceable here; anything else goes on to the state machine, which decides on
  // the state it applies to (and says everything wrong with a spec and its policy at once).
  const a = admission(deps, req);
  if (!a.ok && a.error.code === 'UNPLACEABLE') return a;
  return answer(
    await deps.submit({
      op: 'deploy.submit',
      name: req.name,
      spec: req.spec,
      ...(req.update !== undefined ? { update: req.update } : {}),
      source: req.source,
      atMs: Date.now(),
    }),
  );
}

/**
 * `deploy.check`: what `deploy.submit` of this spec would answer, committing nothing (admission).
 * `pcr deploy` asks it before it pushes a closure the submit would then refuse. Advisory: the
 * submit checks everything again.
 */
export function handleDeployCheck(deps: ApiDeps, req: RequestOf<'deploy.check'>): ApiResponse {
  return admission(deps, req);
}

export async function handleDeployRead(
  deps: ApiDeps,
  req: RequestOf<'deploy.get' | 'deploy.list'>,
): Promise<ApiResponse> {
  const q = req.op === 'deploy.get' ? { op: req.op, name: req.name } : { op: req.op };
  return answer(await deps.read(q, req.stale === true));
}

export async function handleDeployPromote(
  deps: ApiDeps,
  req: RequestOf<'deploy.promote'>,
): Promise<ApiResponse> {
  return answer(await deps.submit({ op: 'deploy.promote', name: req.name, atMs: Date.now() }));
}

/**
 * `pcr deploy rollback`: refused before anything is committed when no member holds the target
 * version's boot closure any more (its runner, kernel, initrd, disks: the known-good pins keep
 * them, unless every member that held one is gone); the state machine re-checks the version.
 */
export async function handleDeployRollback(
  deps: ApiDeps,
  req: RequestOf<'deploy.rollback'>,
): Promise<ApiResponse> {
  const missing = await rollbackClosureMissing(deps, req);
  if (missing !== undefined) return apiError('NOT_FOUND', missing);
  return answer(
    await deps.submit({
      op: 'deploy.rollback',
      name: req.name,
      ...(req.to !== undefined ? { to: req.to } : {}),
      atMs: Date.now(),
    }),
  );
}

/** Why the rollback's closure cannot be had, or undefined (also when the store cannot tell). */
async function rollbackClosureMissing(
  deps: ApiDeps,
  req: RequestOf<'deploy.rollback'>,
): Promise<string | undefined> {
  const d = deps.node.sm.deployments.get(req.name);
  const store = deps.store();
  if (d === undefined || store === undefined) return undefined;
  const t = rollbackTarget(d, req.to);
  if (!t.ok) return undefined; // the state machine says why
  for (const root of bootRoots(t.version.spec)) {
    if ((await store.info(root)) !== undefined) continue;
    const where = await store.where(root);
    if (where.holders.length > 0) continue;
    if (where.unanswered.length > 0)
      return `version ${t.version.n} of ${req.name} boots from ${root}, which no member that answered holds (${plural(where.unanswered.length, 'member')} did not answer: ${where.unanswered.join(', ')}): try again once they answer`;
    return `version ${t.version.n} of ${req.name} boots from ${root}, which no member holds any more: deploy its source again (pcr deploy of the flake at ${t.version.source.rev ?? t.version.source.commit ?? 'its revision'})`;
  }
  return undefined;
}

/** `pcr deploy stop` and `pcr deploy rm`: the state machine stops or removes the instances. */
export async function handleDeployStop(
  deps: ApiDeps,
  req: RequestOf<'deploy.stop' | 'deploy.rm'>,
): Promise<ApiResponse> {
  return answer(await deps.submit({ op: req.op, name: req.name, atMs: Date.now() }));
}
