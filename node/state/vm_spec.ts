// The VM spec (version 1): its type, its bounds, the pure validator used at submission and at
// apply, and its hash. docs/vm-spec.md is the user's reference. Pure: it sits beside the state
// machine that applies it and reaches no file system; the node-side check of the files a spec
// names is node/vmm/spec.ts.

import { createHash } from 'node:crypto';
import { PLACEMENT_FIELDS, type PlacementFields, validatePlacementFields } from '../sched/spec.ts';
import { canonicalJson } from './canonical_json.ts';
import { type HealthCheck, validateHealthChecks } from './health_spec.ts';
import { type Fail, isObj, type Obj, typeName, unknownFields } from './spec_fields.ts';

export const VM_SPEC_VERSION = 1;
/** VM names: lower-case letters, digits and dashes, starting with a letter or digit. */
export const VM_NAME = /^[a-z0-9][a-z0-9-]*$/;
export const VM_NAME_LENGTH_MAX = 40;
export const VM_VCPUS_MAX = 64;
export const VM_MEMORY_MIB_MIN = 32;
export const VM_MEMORY_MIB_MAX = 65_536;
export const VM_CMDLINE_BYTES_MAX = 4096;
export const VM_DISKS_MAX = 16;
export const VM_PATH_BYTES_MAX = 4096;
export const VM_RESTART_ATTEMPTS_MAX = 1000;
export const VM_BACKOFF_MS_MAX = 3_600_000;
/** Linux interface names are at most 15 bytes (IFNAMSIZ - 1). */
export const IFNAME_BYTES_MAX = 15;

export const DEFAULT_VCPUS = 1;
export const DEFAULT_MEMORY_MIB = 256;
export const DEFAULT_CMDLINE = 'console=ttyS0';
export const DEFAULT_MAX_ATTEMPTS = 5;
export const DEFAULT_BACKOFF_INITIAL_MS = 1000;
export const DEFAULT_BACKOFF_MAX_MS = 60_000;

export type Hypervisor = 'qemu' | 'cloud-hypervisor' | 'firecracker';
export const HYPERVISORS: readonly Hypervisor[] = ['qemu', 'cloud-hypervisor', 'firecracker'];

export interface VmDisk {
  readonly path: string;
  readonly readOnly: boolean;
}

export type VmNetwork =
  | { readonly mode: 'none' }
  | { readonly mode: 'tap'; readonly bridge: string; readonly mac?: string };

export type RestartPolicy =
  | { readonly policy: 'never' }
  | {
      readonly policy: 'on-failure' | 'always';
      /** Restarts in a row; 0 = unlimited (only for `always`). */
      readonly maxAttempts: number;
      readonly backoffInitialMs: number;
      readonly backoffMaxMs: number;
    };

/** A validated spec with its defaults filled in. Exactly one of `runner` and `kernel` is set. */
export interface VmSpec {
  readonly version: 1;
  readonly name: string;
  readonly runner?: string;
  readonly kernel?: string;
  readonly initrd?: string;
  readonly cmdline?: string;
  readonly disks: readonly VmDisk[];
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly network: VmNetwork;
  readonly restart: RestartPolicy;
  readonly hypervisor?: Hypervisor;
  /**
   * Where the cluster may run it (docs/scheduling.md): set when the spec names any placement
   * field (`count`, `constraints`, ...). Not part of specHash: moving or scaling a group does not
   * restart its running instances.
   */
  readonly placement?: PlacementFields;
  /**
   * Health checks (node/state/health_spec.ts, docs/deploy.md): absent when the spec gives none (or
   * an empty list), so the hash of a spec without checks is what it was before checks existed.
   * Part of specHash: new checks are a new spec, as a new probe is a new pod in Kubernetes (D-record
   * in docs/decisions.md).
   */
  readonly health?: readonly HealthCheck[];
}

export interface SpecIssue {
  readonly code: 'SPEC_INVALID';
  /** The field path, e.g. `restart.backoffMaxMs` or `disks[1].path`. */
  readonly path: string;
  /** Starts with the path; says what is wrong and what is allowed. */
  readonly message: string;
}

export type SpecResult =
  | { readonly ok: true; readonly spec: VmSpec }
  | { readonly ok: false; readonly errors: readonly SpecIssue[] };

const STORE_PATH = /^\/nix\/store\/[0123456789abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+\-._?=]+$/;
const IFNAME = /^[A-Za-z0-9_.-]+$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

const TOP_FIELDS = [
  'version',
  'name',
  'runner',
  'kernel',
  'initrd',
  'cmdline',
  'disks',
  'vcpus',
  'memoryMiB',
  'network',
  'restart',
  'hypervisor',
  'health',
  ...PLACEMENT_FIELDS,
];

/** Validates a parsed spec. Pure; collects every error; unknown fields are refused. */
export function validateVmSpec(input: unknown): SpecResult {
  const errors: SpecIssue[] = [];
  const fail: Fail = (path, what) => {
    errors.push({ code: 'SPEC_INVALID', path, message: `${path}: ${what}` });
    return undefined;
  };
  if (!isObj(input)) {
    fail('(spec)', `must be a JSON object, got ${typeName(input)}`);
    return { ok: false, errors };
  }
  unknownFields(input, TOP_FIELDS, '', fail);
  checkVersion(input.version, fail);
  const name = parseName(input.name, fail);
  const boot = parseBoot(input, fail);
  const disks = input.disks === undefined ? [] : parseDisks(input.disks, fail);
  const vcpus = optInt(input, 'vcpus', 1, VM_VCPUS_MAX, 'VM_VCPUS_MAX', fail) ?? DEFAULT_VCPUS;
  const memoryMiB =
    optInt(input, 'memoryMiB', VM_MEMORY_MIB_MIN, VM_MEMORY_MIB_MAX, 'VM_MEMORY_MIB_MAX', fail) ??
    DEFAULT_MEMORY_MIB;
  const network: VmNetwork =
    input.network === undefined ? { mode: 'none' } : parseNetwork(input.network, fail);
  const restart: RestartPolicy =
    input.restart === undefined ? { policy: 'never' } : parseRestart(input.restart, fail);
  const hypervisor = parseHypervisor(input.hypervisor, fail);
  checkBootFields(input, fail);
  const placement = parsePlacement(input, errors);
  const health = parseHealth(input, network, errors);
  const extra = {
    ...(placement !== undefined ? { placement } : {}),
    ...(health !== undefined && health.length > 0 ? { health } : {}),
  };

  if (errors.length > 0 || name === undefined) return { ok: false, errors };
  const spec: VmSpec =
    boot.runner !== undefined
      ? {
          version: 1,
          name,
          runner: boot.runner,
          disks: [],
          vcpus,
          memoryMiB,
          network,
          restart,
          ...extra,
        }
      : {
          version: 1,
          name,
          kernel: boot.kernel!,
          ...(boot.initrd !== undefined ? { initrd: boot.initrd } : {}),
          cmdline: boot.cmdline ?? DEFAULT_CMDLINE,
          disks,
          vcpus,
          memoryMiB,
          network,
          restart,
          hypervisor: hypervisor ?? 'qemu',
          ...extra,
        };
  return { ok: true, spec };
}

/** The placement fields when the spec names any (their errors join the spec's). */
function parsePlacement(input: Obj, errors: SpecIssue[]): PlacementFields | undefined {
  if (!PLACEMENT_FIELDS.some((f) => input[f] !== undefined)) return undefined;
  const r = validatePlacementFields(input);
  if (!r.ok) {
    errors.push(...r.errors);
    return undefined;
  }
  return r.fields;
}

/** The health checks when the spec gives any (their errors join the spec's). */
function parseHealth(
  input: Obj,
  network: VmNetwork,
  errors: SpecIssue[],
): readonly HealthCheck[] | undefined {
  if (input.health === undefined) return undefined;
  const kind = input.runner !== undefined ? 'runner' : network.mode;
  const r = validateHealthChecks(input.health, kind);
  if (!r.ok) {
    errors.push(...r.errors);
    return undefined;
  }
  return r.checks;
}

/** The placement fields of a spec, defaults when it names none. */
export function placementOf(spec: VmSpec): PlacementFields {
  return (
    spec.placement ?? {
      count: 1,
      constraints: [],
      affinities: [],
      allowSharing: false,
      packing: 'binpack',
    }
  );
}

function checkVersion(version: unknown, fail: Fail): void {
  if (version === undefined)
    fail('version', `is required (the current version is ${VM_SPEC_VERSION})`);
  else if (version !== VM_SPEC_VERSION) {
    fail(
      'version',
      `${JSON.stringify(version)} is not supported (the only version is ${VM_SPEC_VERSION})`,
    );
  }
}

function parseName(name: unknown, fail: Fail): string | undefined {
  if (name === undefined) return fail('name', 'is required');
  if (typeof name !== 'string') return fail('name', `must be a string, got ${typeName(name)}`);
  if (name.length === 0 || name.length > VM_NAME_LENGTH_MAX) {
    return fail(
      'name',
      `must be 1 to ${VM_NAME_LENGTH_MAX} characters (VM_NAME_LENGTH_MAX), got ${name.length}`,
    );
  }
  if (!VM_NAME.test(name)) {
    return fail(
      'name',
      `${JSON.stringify(name)} must be lower-case letters, digits and dashes, starting with a letter or digit`,
    );
  }
  return name;
}

interface Boot {
  readonly runner: string | undefined;
  readonly kernel: string | undefined;
  readonly initrd: string | undefined;
  readonly cmdline: string | undefined;
}

/** What boots the VM: a runner closure, or a kernel with its initrd and command line. */
function parseBoot(input: Obj, fail: Fail): Boot {
  const runner = optString(input, 'runner', fail);
  const kernel = optString(input, 'kernel', fail);
  if (input.runner === undefined && input.kernel === undefined) {
    fail('kernel', 'one of runner (a microvm.nix runner store path) or kernel is required');
  }
  if (input.runner !== undefined && input.kernel !== undefined) {
    fail('runner', 'give either runner or kernel, not both');
  }
  if (runner !== undefined && !STORE_PATH.test(runner)) {
    fail('runner', `${JSON.stringify(runner)} is not a Nix store path (/nix/store/<hash>-<name>)`);
  }
  if (kernel !== undefined) absPath('kernel', kernel, fail);
  const initrd = optString(input, 'initrd', fail);
  if (initrd !== undefined) absPath('initrd', initrd, fail);
  const cmdline = optString(input, 'cmdline', fail);
  if (cmdline !== undefined && Buffer.byteLength(cmdline) > VM_CMDLINE_BYTES_MAX) {
    fail(
      'cmdline',
      `is ${Buffer.byteLength(cmdline)} bytes, above the maximum ${VM_CMDLINE_BYTES_MAX} (VM_CMDLINE_BYTES_MAX)`,
    );
  }
  return { runner, kernel, initrd, cmdline };
}

/** A runner closure decides the boot fields itself; without runner or kernel they mean nothing. */
function checkBootFields(input: Obj, fail: Fail): void {
  if (input.runner !== undefined) {
    // Accepting them would silently ignore them.
    for (const f of ['initrd', 'cmdline', 'disks', 'network', 'hypervisor']) {
      if (input[f] !== undefined)
        fail(f, 'is not allowed with runner (the runner closure fixes it)');
    }
  } else if (input.kernel === undefined) {
    for (const f of ['initrd', 'cmdline', 'disks']) {
      if (input[f] !== undefined) fail(f, 'is allowed only with kernel');
    }
  }
}

function parseDisks(disks: unknown, fail: Fail): VmDisk[] {
  if (!Array.isArray(disks)) {
    fail('disks', `must be an array, got ${typeName(disks)}`);
    return [];
  }
  if (disks.length > VM_DISKS_MAX) {
    fail('disks', `has ${disks.length} entries, above the maximum ${VM_DISKS_MAX} (VM_DISKS_MAX)`);
    return [];
  }
  const out: VmDisk[] = [];
  for (const [i, d] of (disks as unknown[]).entries()) {
    const disk = parseDisk(d, `disks[${i}]`, fail);
    if (disk !== undefined) out.push(disk);
  }
  return out;
}

function parseDisk(d: unknown, p: string, fail: Fail): VmDisk | undefined {
  if (!isObj(d)) return fail(p, `must be an object {path, readOnly?}, got ${typeName(d)}`);
  unknownFields(d, ['path', 'readOnly'], `${p}.`, fail);
  if (typeof d.path !== 'string') return fail(`${p}.path`, 'is required and must be a string');
  if (!absPath(`${p}.path`, d.path, fail)) return undefined;
  if (d.readOnly !== undefined && typeof d.readOnly !== 'boolean') {
    return fail(`${p}.readOnly`, `must be true or false, got ${typeName(d.readOnly)}`);
  }
  return { path: d.path, readOnly: d.readOnly === true };
}

/** The network; on an error the VM gets none (the spec is refused anyway). */
function parseNetwork(n: unknown, fail: Fail): VmNetwork {
  const none: VmNetwork = { mode: 'none' };
  if (!isObj(n)) return fail('network', `must be an object, got ${typeName(n)}`) ?? none;
  if (n.mode === 'none') {
    unknownFields(n, ['mode'], 'network.', fail);
    return none;
  }
  if (n.mode !== 'tap') {
    return fail('network.mode', `${JSON.stringify(n.mode)} must be "none" or "tap"`) ?? none;
  }
  unknownFields(n, ['mode', 'bridge', 'mac'], 'network.', fail);
  if (typeof n.bridge !== 'string')
    fail('network.bridge', 'is required for mode "tap" (the bridge the tap joins)');
  else if (n.bridge.length === 0 || n.bridge.length > IFNAME_BYTES_MAX || !IFNAME.test(n.bridge)) {
    fail(
      'network.bridge',
      `${JSON.stringify(n.bridge)} is not an interface name (1 to ${IFNAME_BYTES_MAX} of A-Z a-z 0-9 _ . -)`,
    );
  }
  if (n.mac !== undefined) {
    if (typeof n.mac !== 'string' || !MAC.test(n.mac))
      fail('network.mac', `${JSON.stringify(n.mac)} is not a MAC address xx:xx:xx:xx:xx:xx`);
    else if ((Number.parseInt(n.mac.slice(0, 2), 16) & 1) === 1)
      fail('network.mac', `${n.mac} is a multicast address; use a unicast one`);
  }
  if (typeof n.bridge !== 'string') return none;
  return typeof n.mac === 'string'
    ? { mode: 'tap', bridge: n.bridge, mac: n.mac.toLowerCase() }
    : { mode: 'tap', bridge: n.bridge };
}

/** The restart policy; on an error, never (the spec is refused anyway). */
function parseRestart(r: unknown, fail: Fail): RestartPolicy {
  const never: RestartPolicy = { policy: 'never' };
  if (!isObj(r)) return fail('restart', `must be an object, got ${typeName(r)}`) ?? never;
  if (r.policy === 'never') {
    unknownFields(r, ['policy'], 'restart.', fail);
    return never;
  }
  if (r.policy !== 'on-failure' && r.policy !== 'always') {
    const what = `${JSON.stringify(r.policy)} must be "never", "on-failure" or "always"`;
    return fail('restart.policy', what) ?? never;
  }
  unknownFields(r, ['policy', 'maxAttempts', 'backoffInitialMs', 'backoffMaxMs'], 'restart.', fail);
  const int = (key: string, max: number, maxName: string): number | undefined =>
    optInt(r, key, 0, max, maxName, fail, 'restart.');
  const maxAttempts =
    int('maxAttempts', VM_RESTART_ATTEMPTS_MAX, 'VM_RESTART_ATTEMPTS_MAX') ?? DEFAULT_MAX_ATTEMPTS;
  if (r.policy === 'on-failure' && maxAttempts === 0) {
    fail('restart.maxAttempts', '0 (unlimited) is allowed only with policy "always"');
  }
  const backoffInitialMs =
    int('backoffInitialMs', VM_BACKOFF_MS_MAX, 'VM_BACKOFF_MS_MAX') ?? DEFAULT_BACKOFF_INITIAL_MS;
  const backoffMaxMs =
    int('backoffMaxMs', VM_BACKOFF_MS_MAX, 'VM_BACKOFF_MS_MAX') ??
    Math.max(DEFAULT_BACKOFF_MAX_MS, backoffInitialMs);
  if (backoffMaxMs < backoffInitialMs) {
    fail(
      'restart.backoffMaxMs',
      `${backoffMaxMs} is below restart.backoffInitialMs ${backoffInitialMs}`,
    );
  }
  return { policy: r.policy, maxAttempts, backoffInitialMs, backoffMaxMs };
}

function parseHypervisor(v: unknown, fail: Fail): Hypervisor | undefined {
  if (v === undefined) return undefined;
  if (!HYPERVISORS.includes(v as Hypervisor)) {
    return fail('hypervisor', `${JSON.stringify(v)} must be one of ${HYPERVISORS.join(', ')}`);
  }
  return v as Hypervisor;
}

/** Parses and validates a spec file's text (JSON). */
export function parseVmSpec(text: string): SpecResult {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return {
      ok: false,
      errors: [
        {
          code: 'SPEC_INVALID',
          path: '(spec)',
          message: `(spec): not valid JSON: ${(e as Error).message}`,
        },
      ],
    };
  }
  return validateVmSpec(parsed);
}

/** One line per error, for a CLI. */
export function formatSpecErrors(errors: readonly SpecIssue[]): string {
  return errors.map((e) => e.message).join('\n');
}

/** SHA-256 (hex) of the spec's canonical JSON (keys sorted): equal specs, equal hashes. */
export function specHash(spec: VmSpec): string {
  const { placement: _placement, ...runtime } = spec;
  return createHash('sha256').update(canonicalJson(runtime)).digest('hex');
}

function optString(o: Obj, key: string, fail: Fail): string | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') return fail(key, `must be a string, got ${typeName(v)}`);
  return v;
}

function absPath(path: string, v: string, fail: Fail): boolean {
  if (!v.startsWith('/'))
    return fail(path, `${JSON.stringify(v)} must be an absolute path`) ?? false;
  if (Buffer.byteLength(v) > VM_PATH_BYTES_MAX) {
    return fail(path, `is longer than ${VM_PATH_BYTES_MAX} bytes (VM_PATH_BYTES_MAX)`) ?? false;
  }
  if (v.includes('\0') || v.includes(',')) {
    // A comma would split a QEMU option string (-drive file=...,): refuse it rather than escape.
    return fail(path, `${JSON.stringify(v)} must not contain a comma or NUL`) ?? false;
  }
  return true;
}

function optInt(
  o: Obj,
  key: string,
  min: number,
  max: number,
  maxName: string,
  fail: Fail,
  prefix = '',
): number | undefined {
  const v = o[key];
  const path = `${prefix}${key}`;
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v))
    return fail(path, `must be an integer, got ${typeName(v)}`);
  if (v < min) return fail(path, `${v} is below the minimum ${min}`);
  if (v > max) return fail(path, `${v} is above the maximum ${max} (${maxName})`);
  return v;
}
