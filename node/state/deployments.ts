// The replicated deployment table (docs/deploy.md, "Replicated state"): per deployment, its
// immutable versions (a validated VM spec and an update policy each), the newest known-good one
// and the newest rollout. A deployment is a VM group whose spec changes only through versions:
// this table writes the group's rows through the VM table (the first version whole, then the
// instances a rollout step replaces), and the state machine refuses vm.put, vm.stop and vm.rm on
// its group. Pure and deterministic like the rest of the state machine: every field comes from a
// command, the clock only from a command's `atMs`.
//
// Not here: the decision of what to replace next (node/sched/rollout.ts, pure, which the leader's
// rollout duty runs and this table re-runs at apply to re-check a step or a finish).

import { createHash } from 'node:crypto';
import { assert } from '../../consensus/assert.ts';
import {
  census,
  PLANTED_ROLLOUT_PARALLEL,
  type RolloutCensus,
  replaceable,
  rolloutStep,
} from '../sched/rollout.ts';
import { VM_COUNT_MAX } from '../sched/spec.ts';
import { canonicalJson } from './canonical_json.ts';
import {
  formatSpecErrors,
  placementOf,
  VM_NAME,
  VM_NAME_LENGTH_MAX,
  type VmSpec,
  validateVmSpec,
} from './vm_spec.ts';
import { type PlacementContext, VM_REASON_BYTES_MAX, type VmEntry, type VmTable } from './vms.ts';

/** Versions kept per deployment (the newest); the newest known-good one is kept beyond them. */
export const DEPLOY_VERSIONS_KEPT = 20;
/** The widest a rollout may replace at once. */
export const DEPLOY_PARALLEL_MAX = 64;
/** Longest text of a deployment's source (flake, rev, narHash, commit). */
export const DEPLOY_SOURCE_BYTES_MAX = 1024;
/** Deployments the cluster holds at most. */
export const DEPLOYMENTS_MAX = 1000;
/** Longest of the policy's times (minHealthyMs, healthyDeadlineMs, progressDeadlineMs): 7 days. */
export const DEPLOY_DEADLINE_MS_MAX = 7 * 24 * 3_600_000;
/** Instances one deploy.step names at most (replace and remove each): two versions' counts. */
export const DEPLOY_STEP_NAMES_MAX = 2 * VM_COUNT_MAX;

export interface UpdatePolicy {
  /** 1..DEPLOY_PARALLEL_MAX, default 1. */
  readonly maxParallel: number;
  readonly minHealthyMs: number;
  /** > minHealthyMs. */
  readonly healthyDeadlineMs: number;
  /** >= healthyDeadlineMs. */
  readonly progressDeadlineMs: number;
  readonly autoRevert: boolean;
  /** 0..count. */
  readonly canary: number;
}

export const UPDATE_POLICY_DEFAULT: UpdatePolicy = {
  maxParallel: 1,
  minHealthyMs: 10_000,
  healthyDeadlineMs: 300_000,
  progressDeadlineMs: 600_000,
  autoRevert: false,
  canary: 0,
};

export interface DeploySource {
  readonly flake?: string;
  readonly rev?: string;
  readonly narHash?: string;
  readonly commit?: string;
  /** The version this one reverts (autoRevert after a failure, or deploy.rollback). */
  readonly revertOf?: number;
  readonly atMs: number;
}

export interface DeployVersion {
  /** 1, 2, ... per deployment, counted at apply. */
  readonly n: number;
  /** Normalized (validateVmSpec); its name is the deployment's. */
  readonly spec: VmSpec;
  readonly update: UpdatePolicy;
  readonly source: DeploySource;
  /** Hash of the whole spec and the policy: identical re-submission detection. */
  readonly specHash: string;
  /** Raft index of the entry that created it: the generation of its rows. */
  readonly index: number;
}

/** `stopped`: by `pcr deploy stop` (its instances are desired stopped; a new version starts it). */
export type RolloutState = 'running' | 'paused' | 'succeeded' | 'failed' | 'stopped';

export interface Rollout {
  /** The version the group ran before (absent for the first). */
  readonly from?: number;
  readonly to: number;
  readonly state: RolloutState;
  readonly startedAtMs: number;
  /** Last time an instance of `to` became healthy (or the start). */
  readonly progressAtMs: number;
  /** A canary rollout: set by deploy.promote. */
  readonly promoted: boolean;
  /** Why it failed. */
  readonly reason?: string;
}

export interface Deployment {
  readonly name: string;
  /** The newest DEPLOY_VERSIONS_KEPT, oldest first, and the newest known-good one beyond them. */
  readonly versions: readonly DeployVersion[];
  /** The newest version whose rollout succeeded. */
  readonly knownGood?: number;
  /** Versions (among those kept) whose rollout succeeded: what deploy.rollback may go back to. */
  readonly good: readonly number[];
  /** The newest rollout (kept after it ended, for status). */
  readonly rollout?: Rollout;
}

type SourceIn = Omit<DeploySource, 'atMs' | 'revertOf'>;

export type DeployCommand =
  | {
      readonly op: 'deploy.submit';
      readonly name: string;
      readonly spec: unknown;
      readonly update?: unknown;
      readonly source: SourceIn;
      readonly atMs: number;
    }
  | {
      readonly op: 'deploy.step';
      readonly name: string;
      readonly to: number;
      readonly viewIndex: number;
      readonly replace: readonly string[];
      readonly remove: readonly string[];
      readonly atMs: number;
    }
  | {
      readonly op: 'deploy.finish';
      readonly name: string;
      readonly to: number;
      readonly outcome: 'succeeded' | 'failed';
      readonly reason?: string;
      readonly atMs: number;
    }
  | { readonly op: 'deploy.promote'; readonly name: string; readonly atMs: number }
  | {
      readonly op: 'deploy.rollback';
      readonly name: string;
      readonly to?: number;
      readonly atMs: number;
    }
  /** Every instance desired stopped, the rollout ended; versions kept (a new one starts it again). */
  | { readonly op: 'deploy.stop'; readonly name: string; readonly atMs: number }
  /** The deployment, its versions and its instances removed (the name is free again). */
  | { readonly op: 'deploy.rm'; readonly name: string; readonly atMs: number };

export type DeployQuery =
  | { readonly op: 'deploy.get'; readonly name: string }
  | { readonly op: 'deploy.list' };

export type DeployResult =
  | {
      ok: true;
      deployment?: Deployment;
      deployments?: Deployment[];
      version?: number;
      noop?: boolean;
    }
  | { ok: false; code: 'notFound' | 'invalid' | 'stale'; message: string };

export const DEPLOY_OPS: readonly DeployCommand['op'][] = [
  'deploy.submit',
  'deploy.step',
  'deploy.finish',
  'deploy.promote',
  'deploy.rollback',
  'deploy.stop',
  'deploy.rm',
];

const isObj = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x);

const POLICY_FIELDS = Object.keys(UPDATE_POLICY_DEFAULT);

function msField(o: Record<string, unknown>, k: keyof UpdatePolicy, errors: string[]): number {
  const v = o[k] ?? UPDATE_POLICY_DEFAULT[k];
  if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) > DEPLOY_DEADLINE_MS_MAX) {
    errors.push(
      `update.${k}: must be an integer of 0 to ${DEPLOY_DEADLINE_MS_MAX} ms (DEPLOY_DEADLINE_MS_MAX: 7 days)`,
    );
    return 0;
  }
  return v as number;
}

/**
 * Validates an update policy for a group of `count` instances, filling in the defaults (pure,
 * every error collected, unknown fields refused).
 */
export function validateUpdatePolicy(
  input: unknown,
  count: number,
): { ok: true; policy: UpdatePolicy } | { ok: false; errors: string[] } {
  const o = input === undefined ? {} : input;
  if (!isObj(o)) return { ok: false, errors: ['update: must be an object'] };
  const errors: string[] = [];
  for (const k of Object.keys(o))
    if (!POLICY_FIELDS.includes(k))
      errors.push(`update.${k}: unknown field (known: ${POLICY_FIELDS.join(', ')})`);
  const maxParallel = o.maxParallel ?? UPDATE_POLICY_DEFAULT.maxParallel;
  if (
    !Number.isSafeInteger(maxParallel) ||
    (maxParallel as number) < 1 ||
    (maxParallel as number) > DEPLOY_PARALLEL_MAX
  )
    errors.push(`update.maxParallel: must be 1 to ${DEPLOY_PARALLEL_MAX} (DEPLOY_PARALLEL_MAX)`);
  const minHealthyMs = msField(o, 'minHealthyMs', errors);
  const healthyDeadlineMs = msField(o, 'healthyDeadlineMs', errors);
  const progressDeadlineMs = msField(o, 'progressDeadlineMs', errors);
  if (healthyDeadlineMs <= minHealthyMs)
    errors.push(
      `update.healthyDeadlineMs: ${healthyDeadlineMs} must exceed minHealthyMs ${minHealthyMs}`,
    );
  if (progressDeadlineMs < healthyDeadlineMs)
    errors.push(
      `update.progressDeadlineMs: ${progressDeadlineMs} must be at least healthyDeadlineMs ${healthyDeadlineMs}`,
    );
  const autoRevert = o.autoRevert ?? UPDATE_POLICY_DEFAULT.autoRevert;
  if (typeof autoRevert !== 'boolean') errors.push('update.autoRevert: must be true or false');
  const canary = o.canary ?? UPDATE_POLICY_DEFAULT.canary;
  if (!Number.isSafeInteger(canary) || (canary as number) < 0 || (canary as number) > count)
    errors.push(`update.canary: must be 0 to the spec's count (${count})`);
  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    policy: {
      maxParallel: maxParallel as number,
      minHealthyMs,
      healthyDeadlineMs,
      progressDeadlineMs,
      autoRevert: autoRevert as boolean,
      canary: canary as number,
    },
  };
}

const SOURCE_FIELDS = ['flake', 'rev', 'narHash', 'commit'] as const;

function sourceProblem(x: unknown): string | undefined {
  if (!isObj(x)) return 'source must be an object';
  for (const k of Object.keys(x)) {
    if (!(SOURCE_FIELDS as readonly string[]).includes(k))
      return `source.${k}: unknown field (known: ${SOURCE_FIELDS.join(', ')})`;
    const v = x[k];
    if (typeof v !== 'string' || Buffer.byteLength(v) > DEPLOY_SOURCE_BYTES_MAX)
      return `source.${k}: must be a string of at most DEPLOY_SOURCE_BYTES_MAX (${DEPLOY_SOURCE_BYTES_MAX}) bytes`;
  }
  return undefined;
}

/** A deployment's name: a VM name (it is the group's). */
export function deployNameProblem(x: unknown): string | undefined {
  if (typeof x !== 'string' || x.length > VM_NAME_LENGTH_MAX || !VM_NAME.test(x))
    return `name must be a VM name (${VM_NAME.source}, at most ${VM_NAME_LENGTH_MAX} characters)`;
  return undefined;
}

/** The spec as submitted with the deployment's name filled in; a different name is refused. */
export function deploySpec(
  name: string,
  spec: unknown,
): { ok: true; spec: VmSpec } | { ok: false; message: string } {
  if (!isObj(spec)) return { ok: false, message: 'spec must be an object' };
  if (spec.name !== undefined && spec.name !== name)
    return {
      ok: false,
      message: `spec.name ${JSON.stringify(spec.name)} differs from the deployment's name ${name}`,
    };
  const r = validateVmSpec({ ...spec, name });
  return r.ok ? { ok: true, spec: r.spec } : { ok: false, message: formatSpecErrors(r.errors) };
}

function namesProblem(x: unknown, field: string): string | undefined {
  if (
    !Array.isArray(x) ||
    x.length > DEPLOY_STEP_NAMES_MAX ||
    !x.every((n) => typeof n === 'string' && n.length > 0 && n.length <= 2 * VM_NAME_LENGTH_MAX) ||
    new Set(x).size !== x.length
  )
    return `${field} must be a list of at most DEPLOY_STEP_NAMES_MAX (${DEPLOY_STEP_NAMES_MAX}) distinct instance names`;
  return undefined;
}

const versionNumber = (x: unknown): boolean => Number.isSafeInteger(x) && (x as number) >= 1;

/** Shape problems of a deploy command (state-independent), or undefined. */
export function deployCommandProblem(o: Record<string, unknown>): string | undefined {
  if (!Number.isSafeInteger(o.atMs)) return 'atMs must be an integer';
  const named = deployNameProblem(o.name);
  if (named !== undefined) return named;
  switch (o.op) {
    case 'deploy.submit': {
      const s = deploySpec(o.name as string, o.spec);
      if (!s.ok) return s.message;
      const u = validateUpdatePolicy(o.update, placementOf(s.spec).count);
      if (!u.ok) return u.errors.join('\n');
      return sourceProblem(o.source);
    }
    case 'deploy.step':
      if (!versionNumber(o.to)) return 'to must be a version number';
      if (!Number.isSafeInteger(o.viewIndex)) return 'viewIndex must be an integer';
      if (Array.isArray(o.replace) && Array.isArray(o.remove))
        if (o.replace.length + o.remove.length === 0) return 'a step replaces or removes something';
      return namesProblem(o.replace, 'replace') ?? namesProblem(o.remove, 'remove');
    case 'deploy.finish':
      if (!versionNumber(o.to)) return 'to must be a version number';
      if (o.outcome !== 'succeeded' && o.outcome !== 'failed')
        return 'outcome must be succeeded or failed';
      if (
        o.reason !== undefined &&
        (typeof o.reason !== 'string' || Buffer.byteLength(o.reason) > VM_REASON_BYTES_MAX)
      )
        return `reason must be a string of at most VM_REASON_BYTES_MAX (${VM_REASON_BYTES_MAX}) bytes`;
      return undefined;
    case 'deploy.promote':
    case 'deploy.stop':
    case 'deploy.rm':
      return undefined;
    case 'deploy.rollback':
      return o.to === undefined || versionNumber(o.to) ? undefined : 'to must be a version number';
    default:
      return `unknown command op ${JSON.stringify(o.op)}`;
  }
}

export function deployQueryProblem(o: Record<string, unknown>): string | undefined {
  if (o.op === 'deploy.get') return deployNameProblem(o.name);
  if (o.op === 'deploy.list') return undefined;
  return `unknown query op ${JSON.stringify(o.op)}`;
}

/** The hash that detects an identical re-submission: the whole spec (placement too) and policy. */
export function versionHash(spec: VmSpec, update: UpdatePolicy): string {
  return createHash('sha256').update(canonicalJson({ spec, update })).digest('hex');
}

/** The refusal of a vm.put, vm.stop or vm.rm on a deployment's group. */
export function deploymentOwns(name: string): string {
  return `${name} is deployment ${name}: its VMs change only through versions (pcr deploy, pcr deploy rollback)`;
}

const notFound = (name: string): DeployResult => ({
  ok: false,
  code: 'notFound',
  message: `no deployment ${name}: see pcr deploy list`,
});
const stale = (message: string): DeployResult => ({ ok: false, code: 'stale', message });
const invalid = (message: string): DeployResult => ({ ok: false, code: 'invalid', message });

/** DeploymentTable.previewSubmit's answer. */
export type SubmitPreview =
  | {
      readonly ok: false;
      readonly message: string;
      /** The spec, when it is valid itself (the policy or the table refused it). */
      readonly spec?: VmSpec;
    }
  | {
      readonly ok: true;
      readonly spec: VmSpec;
      readonly policy: UpdatePolicy;
      /** The newest version when it already holds this spec and policy (a no-op submit). */
      readonly noop: number | undefined;
    };

/** What the table needs of the rest of the state: the VM table and the placement context. */
export interface DeployContext {
  readonly vms: VmTable;
  readonly placement: PlacementContext;
}

/**
 * The version `deploy.rollback` goes back to: `to`, or the newest known-good version older than
 * the current one; refused when never known-good or no longer kept. Pure: the API checks the
 * target's closure is still held somewhere before it submits (node/api/deploy_handlers.ts).
 */
export function rollbackTarget(
  d: Deployment,
  to: number | undefined,
): { ok: true; version: DeployVersion } | { ok: false; message: string } {
  const current = d.rollout?.to ?? 0;
  const n = to ?? [...d.good].reverse().find((x) => x < current);
  if (n === undefined)
    return {
      ok: false,
      message: `${d.name} has no known-good version older than version ${current}`,
    };
  const v = versionOf(d, n);
  if (v === undefined) return { ok: false, message: `version ${n} of ${d.name} is no longer kept` };
  if (!d.good.includes(n))
    return {
      ok: false,
      message: `version ${n} of ${d.name} never was known-good (its rollout never succeeded)`,
    };
  return { ok: true, version: v };
}

export class DeploymentTable {
  private deployments = new Map<string, Deployment>();
  /** Counts changes (not replicated): the leader's rollout duty looks at it after applied entries. */
  changes = 0;

  apply(index: number, c: DeployCommand, ctx: DeployContext): DeployResult {
    const r = this.applyOne(index, c, ctx);
    if (r.ok && r.noop !== true) this.changes++;
    return r;
  }

  private applyOne(index: number, c: DeployCommand, ctx: DeployContext): DeployResult {
    switch (c.op) {
      case 'deploy.submit':
        return this.submit(index, c, ctx);
      case 'deploy.step':
        return this.step(c, ctx);
      case 'deploy.finish':
        return this.finish(index, c, ctx);
      case 'deploy.promote':
        return this.promote(c);
      case 'deploy.rollback':
        return this.rollback(index, c, ctx);
      case 'deploy.stop':
        return this.stop(c, ctx);
      case 'deploy.rm': {
        const d = this.deployments.get(c.name);
        if (d === undefined) return notFound(c.name);
        ctx.vms.removeInstances(ctx.vms.groupInstances(c.name).map((v) => v.name));
        this.deployments.delete(c.name);
        return { ok: true };
      }
    }
  }

  /**
   * `pcr deploy stop`: every instance desired stopped and the rollout ended as `stopped` (the duty
   * no longer steps it). The versions stay: `pcr deploy` of any spec (the same one included) or
   * `pcr deploy rollback` adds a version, whose rollout starts the instances again.
   */
  private stop(c: DeployCommand & { op: 'deploy.stop' }, ctx: DeployContext): DeployResult {
    const d = this.deployments.get(c.name);
    if (d === undefined) return notFound(c.name);
    ctx.vms.stopInstances(ctx.vms.groupInstances(c.name).map((v) => v.name));
    const newest = d.versions.at(-1)!;
    const r = d.rollout ?? {
      to: newest.n,
      startedAtMs: c.atMs,
      progressAtMs: c.atMs,
      promoted: false,
      state: 'succeeded' as const,
    };
    const next: Deployment = {
      ...d,
      rollout: { ...r, state: 'stopped', reason: 'stopped by pcr deploy stop' },
    };
    this.deployments.set(c.name, next);
    return { ok: true, deployment: next };
  }

  /**
   * The newest version's number when a submission of `spec` and `update` would be a no-op (the
   * same spec and policy as the newest version, whose rollout neither failed nor was stopped).
   */
  sameAsNewest(name: string, spec: VmSpec, update: UpdatePolicy): number | undefined {
    const d = this.deployments.get(name);
    const newest = d?.versions.at(-1);
    if (d === undefined || newest === undefined) return undefined;
    const ended = d.rollout?.state === 'failed' || d.rollout?.state === 'stopped';
    return newest.specHash === versionHash(spec, update) && !ended ? newest.n : undefined;
  }

  /** Whether a VM group (by name) is a deployment's. */
  owns(group: string): boolean {
    return this.deployments.has(group);
  }

  get(name: string): Deployment | undefined {
    return this.deployments.get(name);
  }

  /** Sorted by name. */
  list(): Deployment[] {
    return [...this.deployments.keys()].sort().map((n) => this.deployments.get(n)!);
  }

  query(q: DeployQuery): DeployResult {
    if (q.op === 'deploy.list') return { ok: true, deployments: this.list() };
    const d = this.deployments.get(q.name);
    return d === undefined ? notFound(q.name) : { ok: true, deployment: d };
  }

  /**
   * What `deploy.submit` of this would do, applied to the table as it is, without changing
   * anything: refused (and why), a no-op (the newest version already holds it), or a new version.
   * The submit itself goes through here, so the API's `deploy.check` cannot disagree with it.
   */
  previewSubmit(
    c: { readonly name: string; readonly spec: unknown; readonly update?: unknown },
    vms: VmTable,
  ): SubmitPreview {
    const s = deploySpec(c.name, c.spec);
    if (!s.ok) return { ok: false, message: s.message };
    const u = validateUpdatePolicy(c.update, placementOf(s.spec).count);
    if (!u.ok) return { ok: false, message: u.errors.join('\n'), spec: s.spec };
    const d = this.deployments.get(c.name);
    if (d === undefined) {
      if (this.deployments.size >= DEPLOYMENTS_MAX)
        return {
          ok: false,
          message: `the cluster holds DEPLOYMENTS_MAX (${DEPLOYMENTS_MAX}) deployments`,
          spec: s.spec,
        };
      if (vms.groupInstances(c.name).length > 0)
        return {
          ok: false,
          message: `a VM group ${c.name} exists outside deployments (pcr vm run): remove it (pcr vm rm ${c.name}) or deploy under another name`,
          spec: s.spec,
        };
      return { ok: true, spec: s.spec, policy: u.policy, noop: undefined };
    }
    return {
      ok: true,
      spec: s.spec,
      policy: u.policy,
      noop: this.sameAsNewest(c.name, s.spec, u.policy),
    };
  }

  private submit(
    index: number,
    c: DeployCommand & { op: 'deploy.submit' },
    ctx: DeployContext,
  ): DeployResult {
    const p = this.previewSubmit(c, ctx.vms);
    if (!p.ok) return invalid(p.message);
    const d = this.deployments.get(c.name);
    if (d !== undefined && p.noop !== undefined)
      return { ok: true, noop: true, version: p.noop, deployment: d };
    const source: DeploySource = { ...pickSource(c.source), atMs: c.atMs };
    return this.addVersion(index, c.name, p.spec, p.policy, source, c.atMs, ctx);
  }

  /**
   * Adds version n+1 and starts its rollout (replacing a running one: the new one starts from what
   * runs). The first version writes the group's rows whole (all unplaced, as vm.put).
   */
  private addVersion(
    index: number,
    name: string,
    spec: VmSpec,
    update: UpdatePolicy,
    source: DeploySource,
    atMs: number,
    ctx: DeployContext,
  ): DeployResult {
    const d = this.deployments.get(name);
    const n = (d?.versions.at(-1)?.n ?? 0) + 1;
    const version: DeployVersion = {
      n,
      spec,
      update,
      source,
      specHash: versionHash(spec, update),
      index,
    };
    if (d === undefined) {
      const w = ctx.vms.writeGroup(index, spec, n, atMs, ctx.placement);
      if (!w.ok) return w;
    }
    const rollout: Rollout = {
      ...(d?.rollout !== undefined ? { from: d.rollout.to } : {}),
      to: n,
      state: 'running',
      startedAtMs: atMs,
      progressAtMs: atMs,
      promoted: false,
    };
    const next = trimVersions({
      name,
      versions: [...(d?.versions ?? []), version],
      ...(d?.knownGood !== undefined ? { knownGood: d.knownGood } : {}),
      good: d?.good ?? [],
      rollout,
    });
    this.deployments.set(name, next);
    return { ok: true, noop: false, version: n, deployment: next };
  }

  /** The rollout's census at `atMs` if the rollout targets `to` and is still open, else why not. */
  private open(
    name: string,
    to: number,
    atMs: number,
    ctx: DeployContext,
  ): { d: Deployment; c: RolloutCensus } | DeployResult {
    const d = this.deployments.get(name);
    if (d === undefined) return notFound(name);
    const r = d.rollout;
    if (r === undefined || r.to !== to)
      return stale(`the rollout of ${name} targets version ${r?.to ?? 'none'}, not ${to}`);
    if (r.state !== 'running' && r.state !== 'paused')
      return stale(`the rollout of ${name} to version ${to} is ${r.state}`);
    const c = census(d, ctx.vms.groupInstances(name), atMs);
    if (c === undefined) return stale(`version ${to} of ${name} is no longer kept`);
    return { d, c };
  }

  /**
   * A step of the leader's rollout duty, re-checked against the committed rows at the step's own
   * time: each replaced instance is of the target and not at it yet, the step keeps in-flight
   * instances <= maxParallel (and a canary's stop), and rows are removed only once every instance
   * of the target is healthy.
   */
  private step(c: DeployCommand & { op: 'deploy.step' }, ctx: DeployContext): DeployResult {
    const o = this.open(c.name, c.to, c.atMs, ctx);
    if ('ok' in o) return o;
    const { d, c: cen } = o;
    const r = d.rollout!;
    if (c.replace.length > 0 && r.state === 'paused')
      return stale(`the canary of ${c.name} waits for pcr deploy promote`);
    const notOld = c.replace.find((n) => cen.status.get(n) !== 'old');
    if (notOld !== undefined)
      return stale(
        cen.status.has(notOld)
          ? `${notOld} is already at version ${c.to}`
          : `${notOld} is not an instance of version ${c.to}`,
      );
    const room = replaceable(d, cen);
    if (c.replace.length > room)
      return stale(
        `replacing ${c.replace.length} would exceed maxParallel ${cen.target.update.maxParallel} (${cen.inFlight.length} in flight) or the canary's ${cen.target.update.canary}`,
      );
    if (c.remove.length > 0) {
      if (cen.names.some((n) => cen.status.get(n) !== 'healthy'))
        return stale(`rows are removed only once every instance of version ${c.to} is healthy`);
      const bad = c.remove.find((n) => !cen.extra.includes(n));
      if (bad !== undefined) return stale(`${bad} is not an extra row of ${c.name}`);
    }
    if (c.replace.length > 0) {
      const target = versionOf(d, c.to)!;
      const w = ctx.vms.replaceInstances(
        target.index,
        target.spec,
        target.n,
        c.replace,
        c.atMs,
        ctx.placement,
      );
      if (!w.ok) return w;
    }
    ctx.vms.removeInstances(c.remove);
    this.assertInFlight(d, cen, c.replace.length, ctx, c.atMs);
    const atTarget = cen.names.length - cen.old.length + c.replace.length;
    const u = cen.target.update;
    const pause =
      u.canary > 0 && !r.promoted && atTarget >= u.canary && atTarget < cen.names.length;
    const next: Deployment = {
      ...d,
      rollout: {
        ...r,
        state: pause ? 'paused' : r.state,
        progressAtMs: cen.progressAtMs,
      },
    };
    this.deployments.set(c.name, next);
    return { ok: true, deployment: next };
  }

  /**
   * The invariant, recomputed from the committed rows after a step: a step adds exactly the
   * instances it replaced to those in flight, and never brings them above maxParallel.
   */
  private assertInFlight(
    d: Deployment,
    before: RolloutCensus,
    replaced: number,
    ctx: DeployContext,
    atMs: number,
  ): void {
    if (PLANTED_ROLLOUT_PARALLEL.ignore) return; // the simulator's planted bug: its check must see it
    const after = census(d, ctx.vms.groupInstances(d.name), atMs)!;
    assert(
      after.inFlight.length === before.inFlight.length + replaced,
      `deployments: ${d.name}: a step of ${replaced} moved in-flight instances from ${before.inFlight.length} to ${after.inFlight.length}`,
    );
    assert(
      replaced === 0 || after.inFlight.length <= after.target.update.maxParallel,
      `deployments: ${d.name} has ${after.inFlight.length} instances in flight, above maxParallel ${after.target.update.maxParallel}`,
    );
  }

  /**
   * The end of a rollout, re-checked with the very step function at the finish's own time. A
   * failure with autoRevert and a known-good version adds the revert version and starts its
   * rollout in the same apply: a failover between two entries cannot leave it unreverted.
   */
  private finish(
    index: number,
    c: DeployCommand & { op: 'deploy.finish' },
    ctx: DeployContext,
  ): DeployResult {
    const o = this.open(c.name, c.to, c.atMs, ctx);
    if ('ok' in o) return o;
    const { d, c: cen } = o;
    const verdict = rolloutStep(d, ctx.vms.groupInstances(c.name), c.atMs);
    if (verdict.kind !== 'finish' || verdict.outcome !== c.outcome)
      return stale(`the rollout of ${c.name} to version ${c.to} is not ${c.outcome} at ${c.atMs}`);
    const r = d.rollout!;
    if (c.outcome === 'succeeded') {
      const next: Deployment = {
        ...d,
        knownGood: c.to,
        good: [...d.good.filter((n) => n !== c.to), c.to].sort((a, b) => a - b),
        rollout: { ...r, state: 'succeeded', progressAtMs: cen.progressAtMs },
      };
      this.deployments.set(c.name, trimVersions(next));
      return { ok: true, deployment: this.deployments.get(c.name)!, version: c.to };
    }
    const reason = c.reason ?? verdict.reason ?? 'failed';
    const failed: Deployment = {
      ...d,
      rollout: { ...r, state: 'failed', reason, progressAtMs: cen.progressAtMs },
    };
    this.deployments.set(c.name, failed);
    const good = d.knownGood === undefined ? undefined : versionOf(d, d.knownGood);
    if (!versionOf(d, c.to)!.update.autoRevert || good === undefined)
      return { ok: true, deployment: failed, version: c.to };
    return this.addVersion(
      index,
      c.name,
      good.spec,
      good.update,
      { ...pickSource(good.source), revertOf: c.to, atMs: c.atMs },
      c.atMs,
      ctx,
    );
  }

  private promote(c: DeployCommand & { op: 'deploy.promote' }): DeployResult {
    const d = this.deployments.get(c.name);
    if (d === undefined) return notFound(c.name);
    const r = d.rollout;
    const v = r === undefined ? undefined : versionOf(d, r.to);
    if (
      r === undefined ||
      v === undefined ||
      (r.state !== 'running' && r.state !== 'paused') ||
      v.update.canary === 0 ||
      r.promoted
    )
      return invalid(`${c.name} has no canary rollout waiting for a promotion`);
    // The wait for the promotion is no lack of progress: the progress deadline starts again.
    const next: Deployment = {
      ...d,
      rollout: {
        ...r,
        state: 'running',
        promoted: true,
        progressAtMs: Math.max(r.progressAtMs, c.atMs),
      },
    };
    this.deployments.set(c.name, next);
    return { ok: true, deployment: next };
  }

  /** A new version from a known-good one (default: the newest older than the current target). */
  private rollback(
    index: number,
    c: DeployCommand & { op: 'deploy.rollback' },
    ctx: DeployContext,
  ): DeployResult {
    const d = this.deployments.get(c.name);
    if (d === undefined) return notFound(c.name);
    const t = rollbackTarget(d, c.to);
    if (!t.ok) return invalid(t.message);
    const v = t.version;
    return this.addVersion(
      index,
      c.name,
      v.spec,
      v.update,
      { ...pickSource(v.source), revertOf: d.rollout?.to ?? 0, atMs: c.atMs },
      c.atMs,
      ctx,
    );
  }

  /** Deployments for the snapshot, sorted by name, each in one key order (equal states, equal bytes). */
  rows(): Deployment[] {
    return this.list().map(canonicalDeployment);
  }

  /** Replaces the table by snapshot rows; throws on a malformed row (nothing changes). */
  restore(rows: unknown): void {
    if (!Array.isArray(rows)) throw new Error('state machine: malformed snapshot deployment table');
    const out = new Map<string, Deployment>();
    for (const row of rows as unknown[]) {
      const why = deploymentRowProblem(row);
      if (why !== undefined)
        throw new Error(`state machine: malformed snapshot deployment row: ${why}`);
      const d = canonicalDeployment(row as Deployment);
      out.set(d.name, d);
    }
    if (out.size > DEPLOYMENTS_MAX)
      throw new Error('state machine: malformed snapshot deployment table');
    this.deployments = out;
    this.changes++;
  }
}

function versionOf(d: Deployment, n: number): DeployVersion | undefined {
  return d.versions.find((v) => v.n === n);
}

function pickSource(s: SourceIn | DeploySource): SourceIn {
  const out: Record<string, string> = {};
  for (const k of SOURCE_FIELDS) if (s[k] !== undefined) out[k] = s[k];
  return out;
}

/**
 * Keeps the newest DEPLOY_VERSIONS_KEPT versions and the known-good one; `good` lists only kept
 * versions.
 */
function trimVersions(d: Deployment): Deployment {
  let versions = d.versions;
  while (versions.length > DEPLOY_VERSIONS_KEPT) {
    const drop = versions.findIndex((v) => v.n !== d.knownGood);
    versions = versions.filter((_, i) => i !== drop);
  }
  const kept = new Set(versions.map((v) => v.n));
  return { ...d, versions, good: d.good.filter((n) => kept.has(n)) };
}

function canonicalDeployment(d: Deployment): Deployment {
  return {
    name: d.name,
    versions: d.versions.map((v) => ({
      n: v.n,
      spec: v.spec,
      update: {
        maxParallel: v.update.maxParallel,
        minHealthyMs: v.update.minHealthyMs,
        healthyDeadlineMs: v.update.healthyDeadlineMs,
        progressDeadlineMs: v.update.progressDeadlineMs,
        autoRevert: v.update.autoRevert,
        canary: v.update.canary,
      },
      source: {
        ...pickSource(v.source),
        ...(v.source.revertOf !== undefined ? { revertOf: v.source.revertOf } : {}),
        atMs: v.source.atMs,
      },
      specHash: v.specHash,
      index: v.index,
    })),
    ...(d.knownGood !== undefined ? { knownGood: d.knownGood } : {}),
    good: [...d.good],
    ...(d.rollout !== undefined
      ? {
          rollout: {
            ...(d.rollout.from !== undefined ? { from: d.rollout.from } : {}),
            to: d.rollout.to,
            state: d.rollout.state,
            startedAtMs: d.rollout.startedAtMs,
            progressAtMs: d.rollout.progressAtMs,
            promoted: d.rollout.promoted,
            ...(d.rollout.reason !== undefined ? { reason: d.rollout.reason } : {}),
          },
        }
      : {}),
  };
}

const ROLLOUT_STATES: readonly RolloutState[] = [
  'running',
  'paused',
  'succeeded',
  'failed',
  'stopped',
];

function deploymentRowProblem(row: unknown): string | undefined {
  if (!isObj(row)) return 'not an object';
  if (deployNameProblem(row.name) !== undefined) return 'name';
  if (!Array.isArray(row.versions) || row.versions.length === 0) return 'versions';
  for (const v of row.versions as unknown[]) {
    if (!isObj(v) || !versionNumber(v.n) || !Number.isSafeInteger(v.index)) return 'version';
    if (typeof v.specHash !== 'string' || !isObj(v.source) || !isObj(v.update)) return 'version';
    // The spec was validated at apply and is stored normalized (as the VM table stores it).
    if (!isObj(v.spec) || v.spec.name !== row.name) return `version ${String(v.n)}: spec`;
    if (!validateUpdatePolicy(v.update, placementOf(v.spec as unknown as VmSpec).count).ok)
      return `version ${String(v.n)}: update`;
  }
  if (row.knownGood !== undefined && !versionNumber(row.knownGood)) return 'knownGood';
  if (!Array.isArray(row.good) || !row.good.every(versionNumber)) return 'good';
  const r = row.rollout;
  if (r !== undefined) {
    if (!isObj(r) || !versionNumber(r.to) || !ROLLOUT_STATES.includes(r.state as RolloutState))
      return 'rollout';
    if (!Number.isSafeInteger(r.startedAtMs) || !Number.isSafeInteger(r.progressAtMs))
      return 'rollout';
    if (typeof r.promoted !== 'boolean') return 'rollout';
  }
  return undefined;
}

/** The group's rows a rollout step reads (for the duty and the API). */
export function deploymentRows(vms: VmTable, name: string): VmEntry[] {
  return vms.groupInstances(name);
}
