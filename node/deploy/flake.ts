// `pcr deploy REF`, the client side (docs/deploy.md, "API and CLI"): resolve REF to the flake
// output `procurator.deployments.<name>`, evaluate it, validate its spec (and, once wired, its
// update policy), read where it came from (`nix flake metadata`), build the store paths the spec
// names, push their closure to the member, then submit the version. Every step runs on the machine
// that deploys, never on the cluster; a step that fails stops everything after it: nothing is
// pushed when evaluation or the build fails, nothing is submitted when the push fails.
//
// The member is reached through the two functions the caller passes (`push`, `submit`), so this
// module stays below the CLI; Nix through a NixRunner (nix_cli.ts).

import { validateUpdatePolicy } from '../state/deployments.ts';
import {
  formatSpecErrors,
  placementOf,
  VM_NAME,
  VM_NAME_LENGTH_MAX,
  type VmSpec,
  validateVmSpec,
} from '../state/vm_spec.ts';
import type { ClosurePathInfo } from './diff.ts';
import { localClosure, NixCliError, type NixRunner } from './nix_cli.ts';

/** The flake output that holds deployments (docs/nix.md). */
export const DEPLOYMENTS_ATTR = 'procurator.deployments';
/** A REF longer than this is refused before Nix sees it. */
export const DEPLOY_REF_BYTES_MAX = 4096;
/** What the source fields may hold (docs/deploy.md: DEPLOY_SOURCE_BYTES_MAX). */
export const DEPLOY_SOURCE_BYTES_MAX = 1024;
/** The spec fields that name store paths `pcr deploy` builds and pushes. */
export const BOOT_PATH_FIELDS = ['runner', 'kernel', 'initrd'] as const;

export type DeployErrorKind =
  | 'ref' // REF is not `FLAKE#NAME` or `FLAKE#ATTR.PATH`
  | 'missing' // the flake has no such output
  | 'eval' // Nix failed to evaluate it (Nix's text attached)
  | 'invalid' // the output is not a valid deployment (spec, policy, shape)
  | 'build' // a build failed (Nix's text attached)
  | 'push'; // the closure could not be pushed to the member

export class DeployError extends Error {
  readonly kind: DeployErrorKind;
  /** Nix's own error text, when Nix failed. */
  readonly nixText: string;
  constructor(kind: DeployErrorKind, message: string, nixText = '', cause?: unknown) {
    super(message, cause !== undefined ? { cause } : undefined);
    this.kind = kind;
    this.nixText = nixText;
  }
}

export interface DeployRef {
  /** The flake reference before `#` (`.`, `github:o/r`, `path:/x`). */
  readonly flake: string;
  /** The attribute path after `#`, full (`procurator.deployments.web`). */
  readonly attrPath: string;
  /** The deployment's name: the path's last component. */
  readonly name: string;
  /** `flake#attrPath`, what Nix is given. */
  readonly installable: string;
}

/**
 * REF as `pcr deploy` takes it: `.#web` means `.#procurator.deployments.web`; an attribute path
 * with dots is kept as given and names the deployment by its last component. Pure.
 */
export function resolveDeployRef(ref: string): DeployRef {
  const bad = (why: string): never => {
    throw new DeployError('ref', `${JSON.stringify(ref.slice(0, 200))}: ${why}`);
  };
  if (Buffer.byteLength(ref) > DEPLOY_REF_BYTES_MAX)
    bad(`longer than DEPLOY_REF_BYTES_MAX ${DEPLOY_REF_BYTES_MAX}`);
  const hash = ref.indexOf('#');
  if (hash < 0) bad('expected FLAKE#NAME (e.g. .#web)');
  const flake = ref.slice(0, hash);
  const attr = ref.slice(hash + 1);
  if (flake === '') bad('no flake before # (the current directory is .#NAME)');
  if (attr === '' || attr.split('.').some((c) => c === ''))
    bad('expected a deployment name or attribute path after #');
  const attrPath = attr.includes('.') ? attr : `${DEPLOYMENTS_ATTR}.${attr}`;
  const name = attrPath.slice(attrPath.lastIndexOf('.') + 1);
  if (!VM_NAME.test(name) || name.length > VM_NAME_LENGTH_MAX) {
    bad(
      `the deployment name ${JSON.stringify(name)} is not a VM name (a-z, 0-9 and -, at most ${VM_NAME_LENGTH_MAX})`,
    );
  }
  return { flake, attrPath, name, installable: `${flake}#${attrPath}` };
}

/** Where a version came from (docs/deploy.md DeploySource, less `atMs`, which the member sets). */
export interface DeploySourceFields {
  flake?: string;
  rev?: string;
  narHash?: string;
  commit?: string;
}

/** Locked source types whose `rev` is a git commit. */
const GIT_TYPES = new Set(['git', 'github', 'gitlab', 'sourcehut']);

/** The source fields from `nix flake metadata --json` (pure); texts over the bound are refused. */
export function sourceOfMetadata(json: unknown): DeploySourceFields {
  const m = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>;
  const locked = (typeof m.locked === 'object' && m.locked !== null ? m.locked : {}) as Record<
    string,
    unknown
  >;
  const out: DeploySourceFields = {};
  const url = m.url ?? m.resolvedUrl ?? m.originalUrl;
  if (typeof url === 'string') out.flake = url;
  if (typeof locked.rev === 'string') out.rev = locked.rev;
  if (typeof locked.narHash === 'string') out.narHash = locked.narHash;
  if (typeof locked.rev === 'string' && GIT_TYPES.has(String(locked.type))) out.commit = locked.rev;
  for (const [k, v] of Object.entries(out)) {
    if (Buffer.byteLength(v) > DEPLOY_SOURCE_BYTES_MAX) {
      throw new DeployError(
        'invalid',
        `the flake's ${k} is longer than DEPLOY_SOURCE_BYTES_MAX ${DEPLOY_SOURCE_BYTES_MAX}`,
      );
    }
  }
  return out;
}

/** A deployment as evaluated and validated: what `deploy.submit` carries, before the build. */
export interface EvaluatedDeployment {
  readonly ref: DeployRef;
  /** The spec as the flake wrote it, `name` filled in (the member validates it again). */
  readonly spec: Record<string, unknown>;
  /** The same, validated with defaults filled in. */
  readonly validSpec: VmSpec;
  readonly update?: unknown;
  /** Store paths the spec names (runner, or kernel and initrd). */
  readonly paths: readonly string[];
  /** Derivations (and plain store paths) they come from, from the strings' Nix context. */
  readonly context: readonly string[];
}

/**
 * The update policy check, done before anything is pushed: the state machine's own validator
 * (node/state/deployments.ts), so the client and the member refuse the same policies.
 */
export function updatePolicyProblem(update: unknown, count: number): string | undefined {
  const r = validateUpdatePolicy(update, count);
  return r.ok ? undefined : r.errors.join('; ');
}

/** Nix's words for "the flake has no such attribute" (stable from Nix 2.4 on). */
const MISSING = /does not provide attribute/;

/** An expression applied to the output: the store paths the boot fields' strings depend on. */
const CONTEXT_OF = `d: builtins.attrNames (builtins.getContext (${BOOT_PATH_FIELDS.map(
  (f) => `toString (d.spec.${f} or "")`,
).join(' + ')}))`;

async function evalJson(nix: NixRunner, ref: DeployRef, apply?: string): Promise<unknown> {
  const args = [
    'eval',
    '--json',
    ref.installable,
    ...(apply !== undefined ? ['--apply', apply] : []),
  ];
  try {
    return JSON.parse(await nix(args));
  } catch (e) {
    if (!(e instanceof NixCliError)) throw e;
    if (MISSING.test(e.nixText)) throw await missingError(nix, ref, e.nixText);
    throw new DeployError('eval', `evaluating ${ref.installable} failed`, e.nixText);
  }
}

/** The names under `FLAKE#procurator.deployments`; a DeployError('eval') with Nix's text else. */
export async function deploymentNames(nix: NixRunner, flake: string): Promise<string[]> {
  try {
    const r = JSON.parse(
      await nix([
        'eval',
        '--json',
        `${flake}#${DEPLOYMENTS_ATTR}`,
        '--apply',
        'builtins.attrNames',
      ]),
    );
    return Array.isArray(r) ? r.map(String) : [];
  } catch (e) {
    if (!(e instanceof NixCliError)) throw e;
    throw new DeployError('eval', `listing ${flake}#${DEPLOYMENTS_ATTR} failed`, e.nixText);
  }
}

/** The flake has no such output: say which deployments it has, when it has any. */
async function missingError(nix: NixRunner, ref: DeployRef, nixText: string): Promise<DeployError> {
  let names: string[] = [];
  try {
    names = await deploymentNames(nix, ref.flake);
  } catch {
    // No procurator.deployments at all: the message below says so.
  }
  const has = names.length > 0 ? `it has: ${names.join(', ')}` : `it has no ${DEPLOYMENTS_ATTR}`;
  return new DeployError(
    'missing',
    `the flake ${ref.flake} has no output ${ref.attrPath} (${has})`,
    nixText,
  );
}

/** Evaluates and validates the deployment `ref` names; nothing is built or pushed. */
export async function evaluateDeployment(
  nix: NixRunner,
  ref: DeployRef,
): Promise<EvaluatedDeployment> {
  const value = await evalJson(nix, ref);
  const { spec, update } = deploymentShape(ref, value);
  const r = validateVmSpec(spec);
  if (!r.ok) throw new DeployError('invalid', `${ref.installable}: ${formatSpecErrors(r.errors)}`);
  const policy = updatePolicyProblem(update, placementOf(r.spec).count);
  if (policy !== undefined) throw new DeployError('invalid', `${ref.installable}: ${policy}`);
  const paths = BOOT_PATH_FIELDS.map((f) => r.spec[f]).filter((p): p is string => p !== undefined);
  const context = await evalJson(nix, ref, CONTEXT_OF);
  return {
    ref,
    spec,
    validSpec: r.spec,
    ...(update !== undefined ? { update } : {}),
    paths,
    context: Array.isArray(context) ? context.map(String) : [],
  };
}

/** `{ spec, update? }` with the spec's name filled in (and checked against the deployment's). */
function deploymentShape(
  ref: DeployRef,
  value: unknown,
): { spec: Record<string, unknown>; update?: unknown } {
  const bad = (why: string): never => {
    throw new DeployError('invalid', `${ref.installable}: ${why}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    bad('expected { spec; update; }');
  const o = value as Record<string, unknown>;
  const extra = Object.keys(o).filter((k) => k !== 'spec' && k !== 'update');
  if (extra.length > 0)
    bad(`unknown attribute ${extra.join(', ')} (a deployment has spec and update)`);
  if (typeof o.spec !== 'object' || o.spec === null || Array.isArray(o.spec))
    bad('spec: expected a VM spec (an attribute set)');
  const spec = { ...(o.spec as Record<string, unknown>) };
  if (spec.name === undefined) spec.name = ref.name;
  else if (spec.name !== ref.name)
    bad(`spec.name ${JSON.stringify(spec.name)} differs from the deployment's name ${ref.name}`);
  return { spec, ...(o.update !== undefined ? { update: o.update } : {}) };
}

/** The source of `ref` from `nix flake metadata --json`. */
export async function flakeSource(nix: NixRunner, ref: DeployRef): Promise<DeploySourceFields> {
  try {
    return sourceOfMetadata(JSON.parse(await nix(['flake', 'metadata', '--json', ref.flake])));
  } catch (e) {
    if (!(e instanceof NixCliError)) throw e;
    throw new DeployError(
      'eval',
      `reading the metadata of the flake ${ref.flake} failed`,
      e.nixText,
    );
  }
}

/**
 * Builds what the spec's paths come from (their derivations, from the Nix context) and returns
 * the closure of the paths, from the local Nix store. A path that is not there afterwards (a
 * string without context naming something never built) is a build error.
 */
export async function buildDeployment(
  nix: NixRunner,
  ev: EvaluatedDeployment,
): Promise<ClosurePathInfo[]> {
  const drvs = ev.context.filter((p) => p.endsWith('.drv'));
  if (drvs.length > 0) {
    try {
      // nix-store --realise: a derivation path means "build its outputs" in every Nix version
      // (`nix build` of a .drv changed meaning after 2.8).
      await nix(['--realise', ...drvs], 'nix-store');
    } catch (e) {
      if (!(e instanceof NixCliError)) throw e;
      throw new DeployError('build', `building ${ev.ref.installable} failed`, e.nixText);
    }
  }
  try {
    return await localClosure(nix, ev.paths);
  } catch (e) {
    if (!(e instanceof NixCliError)) throw e;
    throw new DeployError(
      'build',
      `${ev.paths.join(', ')}: not in the local Nix store after the build (does the spec name a path the flake does not build?)`,
      e.nixText,
    );
  }
}

/** What pushing one path did (the `store.push` answer, in part). */
export interface PushResult {
  readonly imported: number;
}

/** The `deploy.submit` request of docs/deploy.md (the member fills in `atMs`). */
export interface DeploySubmit {
  readonly op: 'deploy.submit';
  readonly name: string;
  readonly spec: Record<string, unknown>;
  readonly update?: unknown;
  readonly source: DeploySourceFields;
}

export interface DeploySteps {
  readonly nix: NixRunner;
  /** `pcr store push` of one path to the member; throws when the member does not take it. */
  readonly push: (path: string) => Promise<PushResult>;
  readonly submit: (req: DeploySubmit) => Promise<Record<string, unknown>>;
  /**
   * Asks the member what the submit would answer (`deploy.check`) before anything is pushed;
   * throws its refusal (INVALID, UNPLACEABLE) as the submit would. Absent: no check.
   */
  readonly check?: (req: DeploySubmit) => Promise<void>;
  /** Evaluate, validate and build only: nothing is pushed or submitted. */
  readonly dryRun?: boolean;
  /** Progress, for people (stderr). */
  readonly log?: (line: string) => void;
}

export interface DeployOutcome {
  readonly request: DeploySubmit;
  readonly closure: readonly ClosurePathInfo[];
  /** Paths the member imported (0 when it had them all). */
  readonly imported: number;
  /** The member's answer; absent on a dry run. */
  readonly answer?: Record<string, unknown>;
}

/** The whole client side, in order; each step only after the one before succeeded. */
export async function deployFlake(refText: string, s: DeploySteps): Promise<DeployOutcome> {
  const log = s.log ?? (() => {});
  const ref = resolveDeployRef(refText);
  log(`evaluating ${ref.installable}`);
  const ev = await evaluateDeployment(s.nix, ref);
  const source = await flakeSource(s.nix, ref);
  log(`building ${ev.paths.join(', ')}`);
  const closure = await buildDeployment(s.nix, ev);
  const request: DeploySubmit = {
    op: 'deploy.submit',
    name: ref.name,
    spec: ev.spec,
    ...(ev.update !== undefined ? { update: ev.update } : {}),
    source,
  };
  if (s.dryRun === true) return { request, closure, imported: 0 };
  // A spec the member would refuse is refused before its closure crosses the network.
  if (s.check !== undefined) {
    log(`checking ${ref.name} with the member`);
    await s.check(request);
  }
  let imported = 0;
  for (const path of ev.paths) {
    log(`pushing the closure of ${path}`);
    try {
      imported += (await s.push(path)).imported;
    } catch (e) {
      throw new DeployError(
        'push',
        `pushing ${path} to the member failed: ${(e as Error).message}`,
        '',
        e,
      );
    }
  }
  log(`submitting ${ref.name}`);
  const answer = await s.submit(request);
  return { request, closure, imported, answer };
}
