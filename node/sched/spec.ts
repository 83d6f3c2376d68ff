// Validation of a VM spec's placement fields (count, constraints, affinities, spread,
// allowSharing, packing) and of node labels. Pure; collects every error, each naming its field
// path, in the shape of the spec validator's issues so it can be wired into it (the validator is
// moving to node/state/). vcpus and memoryMiB keep their bounds there. docs/scheduling.md.

import {
  type Affinity,
  attributeProblem,
  type Constraint,
  isOrdered,
  LABEL_PREFIX,
  OPERATORS,
  type Operator,
  ORDERED_OPERATORS,
} from './constraint.ts';
import type { Packing, Spread } from './types.ts';

/** Instances of one VM group. */
export const VM_COUNT_MAX = 100;
export const CONSTRAINTS_MAX = 32;
export const AFFINITIES_MAX = 16;
/** Values in one `in` / `not_in` list. */
export const CONSTRAINT_VALUES_MAX = 64;
export const CONSTRAINT_VALUE_BYTES_MAX = 255;
export const AFFINITY_WEIGHT_MAX = 100;
export const SPREAD_WEIGHT_MAX = 100;
/** Labels per node (`pcr node start --label k=v`). */
export const LABELS_MAX = 32;
export const LABEL_KEY_BYTES_MAX = 63;
export const LABEL_VALUE_BYTES_MAX = 255;

const LABEL_KEY = /^[a-z0-9][a-z0-9._-]*$/;
const PRINTABLE = /^[\x20-\x7e]*$/;

/**
 * What happens to an instance that failed beyond its restart policy on its node (Nomad's
 * reschedule block): it is placed again, away from that node when another fits, after `delayMs`
 * (doubled per earlier reschedule with `exponential`, up to `maxDelayMs`), at most `attempts` times
 * per `intervalMs` (`attempts: 0`: never; `unlimited: true`: no count).
 */
export interface ReschedulePolicy {
  readonly attempts: number;
  readonly intervalMs: number;
  readonly delayMs: number;
  readonly delayFunction: 'constant' | 'exponential';
  readonly maxDelayMs: number;
  readonly unlimited: boolean;
}

/** Nomad's service-job defaults, in spirit: unlimited, exponential from 30 s up to one hour. */
export const RESCHEDULE_DEFAULT: ReschedulePolicy = {
  attempts: 0,
  intervalMs: 0,
  delayMs: 30_000,
  delayFunction: 'exponential',
  maxDelayMs: 3_600_000,
  unlimited: true,
};
export const RESCHEDULE_ATTEMPTS_MAX = 100;
export const RESCHEDULE_MS_MAX = 7 * 86_400_000;

export interface PlacementFields {
  readonly reschedule?: ReschedulePolicy;
  readonly count: number;
  readonly constraints: readonly Constraint[];
  readonly affinities: readonly Affinity[];
  readonly spread?: Spread;
  readonly allowSharing: boolean;
  readonly packing: Packing;
}

export const PLACEMENT_FIELDS = [
  'count',
  'constraints',
  'affinities',
  'spread',
  'allowSharing',
  'packing',
  'reschedule',
] as const;

export interface FieldIssue {
  readonly code: 'SPEC_INVALID';
  readonly path: string;
  /** Starts with the path; says what is wrong and what is allowed. */
  readonly message: string;
}

export type PlacementFieldsResult =
  | { readonly ok: true; readonly fields: PlacementFields }
  | { readonly ok: false; readonly errors: readonly FieldIssue[] };

type Fail = (path: string, what: string) => undefined;
type Obj = Record<string, unknown>;

/** Validates the placement fields of a parsed spec object; other fields are not looked at. */
export function validatePlacementFields(input: Obj): PlacementFieldsResult {
  const errors: FieldIssue[] = [];
  const fail: Fail = (path, what) => {
    errors.push({ code: 'SPEC_INVALID', path, message: `${path}: ${what}` });
    return undefined;
  };
  const count = intField(input.count, 'count', 1, VM_COUNT_MAX, 'VM_COUNT_MAX', fail) ?? 1;
  const constraints = listField(
    input.constraints,
    'constraints',
    CONSTRAINTS_MAX,
    'CONSTRAINTS_MAX',
    fail,
    (x, p) => parseConstraint(x, p, false, fail),
  );
  const affinities = listField(
    input.affinities,
    'affinities',
    AFFINITIES_MAX,
    'AFFINITIES_MAX',
    fail,
    (x, p) => parseConstraint(x, p, true, fail),
  ) as Affinity[];
  for (const why of contradictions(constraints)) fail('constraints', why);
  const spread = input.spread === undefined ? undefined : parseSpread(input.spread, fail);
  if (input.allowSharing !== undefined && typeof input.allowSharing !== 'boolean') {
    fail('allowSharing', `must be true or false, got ${JSON.stringify(input.allowSharing)}`);
  }
  if (input.packing !== undefined && input.packing !== 'binpack' && input.packing !== 'spread') {
    fail('packing', `must be "binpack" or "spread", got ${JSON.stringify(input.packing)}`);
  }
  const reschedule =
    input.reschedule === undefined ? undefined : parseReschedule(input.reschedule, fail);
  if (errors.length > 0) return { ok: false, errors };
  const fields: PlacementFields = {
    ...(reschedule === undefined ? {} : { reschedule }),
    count,
    constraints,
    affinities,
    ...(spread === undefined ? {} : { spread }),
    allowSharing: input.allowSharing === true,
    packing: (input.packing as Packing | undefined) ?? 'binpack',
  };
  return { ok: true, fields };
}

function parseReschedule(v: unknown, fail: Fail): ReschedulePolicy | undefined {
  if (!isObj(v)) return fail('reschedule', `must be an object, got ${typeName(v)}`);
  const known = ['attempts', 'intervalMs', 'delayMs', 'delayFunction', 'maxDelayMs', 'unlimited'];
  for (const k of Object.keys(v))
    if (!known.includes(k)) fail(`reschedule.${k}`, `unknown field (allowed: ${known.join(', ')})`);
  const ms = (k: string) =>
    intField(v[k], `reschedule.${k}`, 0, RESCHEDULE_MS_MAX, 'RESCHEDULE_MS_MAX: 7 days', fail);
  const attempts = intField(
    v.attempts,
    'reschedule.attempts',
    0,
    RESCHEDULE_ATTEMPTS_MAX,
    'RESCHEDULE_ATTEMPTS_MAX',
    fail,
  );
  const intervalMs = ms('intervalMs');
  const delayMs = ms('delayMs');
  const maxDelayMs = ms('maxDelayMs');
  if (
    v.delayFunction !== undefined &&
    v.delayFunction !== 'constant' &&
    v.delayFunction !== 'exponential'
  )
    fail(
      'reschedule.delayFunction',
      `must be "constant" or "exponential", got ${JSON.stringify(v.delayFunction)}`,
    );
  if (v.unlimited !== undefined && typeof v.unlimited !== 'boolean')
    fail('reschedule.unlimited', `must be true or false, got ${JSON.stringify(v.unlimited)}`);
  const unlimited = (v.unlimited as boolean | undefined) ?? attempts === undefined;
  const policy: ReschedulePolicy = {
    attempts: attempts ?? 0,
    intervalMs: intervalMs ?? 3_600_000,
    delayMs: delayMs ?? RESCHEDULE_DEFAULT.delayMs,
    delayFunction:
      (v.delayFunction as ReschedulePolicy['delayFunction'] | undefined) ?? 'exponential',
    maxDelayMs: maxDelayMs ?? RESCHEDULE_DEFAULT.maxDelayMs,
    unlimited,
  };
  if (policy.maxDelayMs < policy.delayMs)
    fail('reschedule.maxDelayMs', `${policy.maxDelayMs} is below delayMs ${policy.delayMs}`);
  return policy;
}

function intField(
  v: unknown,
  path: string,
  min: number,
  max: number,
  bound: string,
  fail: Fail,
): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v))
    return fail(path, `must be an integer, got ${JSON.stringify(v)}`);
  if (v < min || v > max) return fail(path, `${v} is out of bounds: ${min}..${max} (${bound})`);
  return v;
}

function listField<T>(
  v: unknown,
  path: string,
  max: number,
  bound: string,
  fail: Fail,
  parse: (x: unknown, path: string) => T | undefined,
): T[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) return fail(path, `must be an array, got ${typeName(v)}`) ?? [];
  if (v.length > max)
    return fail(path, `has ${v.length} entries, above the maximum ${max} (${bound})`) ?? [];
  const out: T[] = [];
  v.forEach((x, i) => {
    const parsed = parse(x, `${path}[${i}]`);
    if (parsed !== undefined) out.push(parsed);
  });
  return out;
}

function parseConstraint(
  x: unknown,
  path: string,
  weighted: boolean,
  fail: Fail,
): Constraint | Affinity | undefined {
  if (!isObj(x))
    return fail(
      path,
      `must be an object {attribute, operator, value${weighted ? ', weight' : ''}}, got ${typeName(x)}`,
    );
  const known = weighted
    ? ['attribute', 'operator', 'value', 'weight']
    : ['attribute', 'operator', 'value'];
  for (const k of Object.keys(x))
    if (!known.includes(k)) fail(`${path}.${k}`, `unknown field (allowed: ${known.join(', ')})`);
  const attribute = parseAttribute(x.attribute, `${path}.attribute`, fail);
  const operator = OPERATORS.includes(x.operator as Operator)
    ? (x.operator as Operator)
    : undefined;
  if (operator === undefined)
    fail(
      `${path}.operator`,
      `must be one of ${OPERATORS.join(' ')}, got ${JSON.stringify(x.operator)}`,
    );
  const weight = weighted ? parseWeight(x.weight, `${path}.weight`, fail) : 0;
  if (attribute === undefined || operator === undefined || weight === undefined) return undefined;
  const value = parseValue(attribute, operator, x.value, `${path}.value`, fail);
  if (value === null) return undefined;
  const c = { attribute, operator, ...(value === undefined ? {} : { value }) };
  return weighted ? { ...c, weight } : c;
}

function parseAttribute(v: unknown, path: string, fail: Fail): string | undefined {
  if (typeof v !== 'string') return fail(path, `must be a string, got ${typeName(v)}`);
  const problem = attributeProblem(v);
  if (problem !== undefined) return fail(path, problem);
  if (v.startsWith(LABEL_PREFIX)) {
    const why = labelKeyProblem(v.slice(LABEL_PREFIX.length));
    if (why !== undefined) return fail(path, why);
  }
  return v;
}

function parseWeight(v: unknown, path: string, fail: Fail): number | undefined {
  if (
    typeof v !== 'number' ||
    !Number.isSafeInteger(v) ||
    v === 0 ||
    Math.abs(v) > AFFINITY_WEIGHT_MAX
  ) {
    return fail(
      path,
      `must be a non-zero integer in -${AFFINITY_WEIGHT_MAX}..${AFFINITY_WEIGHT_MAX} (AFFINITY_WEIGHT_MAX), got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** The operator's value, undefined for none, or null after reporting an error. */
function parseValue(
  attribute: string,
  op: Operator,
  v: unknown,
  path: string,
  fail: Fail,
): string | readonly string[] | undefined | null {
  if (op === 'exists' || op === 'not_exists') {
    return v === undefined ? undefined : (fail(path, `${op} takes no value`) ?? null);
  }
  if (op === 'in' || op === 'not_in') return parseValueList(v, path, fail) ?? null;
  if (typeof v !== 'string')
    return fail(path, `${op} needs a string value, got ${typeName(v)}`) ?? null;
  if (Buffer.byteLength(v) > CONSTRAINT_VALUE_BYTES_MAX) {
    return (
      fail(
        path,
        `is longer than ${CONSTRAINT_VALUE_BYTES_MAX} bytes (CONSTRAINT_VALUE_BYTES_MAX)`,
      ) ?? null
    );
  }
  if (!ORDERED_OPERATORS.includes(op)) return v;
  if (!attribute.startsWith(LABEL_PREFIX)) {
    return (
      fail(
        path,
        `${op} orders values and applies to label.<key> only (${attribute} has no order)`,
      ) ?? null
    );
  }
  if (!isOrdered(v))
    return (
      fail(path, `${op} needs a number or a dotted version (1.2.10), got ${JSON.stringify(v)}`) ??
      null
    );
  return v;
}

function parseValueList(v: unknown, path: string, fail: Fail): readonly string[] | undefined {
  if (!Array.isArray(v) || v.length === 0 || !v.every((s) => typeof s === 'string')) {
    return fail(path, `must be a non-empty array of strings, got ${JSON.stringify(v)}`);
  }
  if (v.length > CONSTRAINT_VALUES_MAX) {
    return fail(
      path,
      `has ${v.length} values, above the maximum ${CONSTRAINT_VALUES_MAX} (CONSTRAINT_VALUES_MAX)`,
    );
  }
  if (new Set(v).size !== v.length) return fail(path, 'lists a value twice');
  if (v.some((s: string) => Buffer.byteLength(s) > CONSTRAINT_VALUE_BYTES_MAX)) {
    return fail(
      path,
      `a value is longer than ${CONSTRAINT_VALUE_BYTES_MAX} bytes (CONSTRAINT_VALUE_BYTES_MAX)`,
    );
  }
  return v as string[];
}

function parseSpread(v: unknown, fail: Fail): Spread | undefined {
  if (!isObj(v)) return fail('spread', `must be an object {attribute, weight}, got ${typeName(v)}`);
  for (const k of Object.keys(v))
    if (k !== 'attribute' && k !== 'weight')
      fail(`spread.${k}`, 'unknown field (allowed: attribute, weight)');
  const attribute = parseAttribute(v.attribute, 'spread.attribute', fail);
  const weight =
    v.weight === undefined
      ? SPREAD_WEIGHT_MAX
      : intField(v.weight, 'spread.weight', 1, SPREAD_WEIGHT_MAX, 'SPREAD_WEIGHT_MAX', fail);
  if (v.weight === null) fail('spread.weight', 'must be an integer');
  return attribute === undefined || weight === undefined ? undefined : { attribute, weight };
}

/**
 * Pairs of constraints no node can satisfy together, whatever the cluster: `a = x` with `a = y`,
 * `a != x`, `a not_in [..x..]` or `a in [...]` without x; `exists` with `not_exists`. (`backend`
 * is multi-valued: `backend = qemu` and `backend = microvm` can both hold.)
 */
export function contradictions(cs: readonly Constraint[]): string[] {
  const out: string[] = [];
  for (const a of cs) {
    for (const b of cs) {
      if (a === b || a.attribute !== b.attribute) continue;
      if (a.operator === 'exists' && b.operator === 'not_exists') {
        out.push(`${a.attribute} exists and not_exists: no node can satisfy both`);
      }
      if (a.operator !== '=') continue;
      const x = a.value as string;
      const clash =
        (b.operator === '=' && b.value !== x && a.attribute !== 'backend') ||
        (b.operator === '!=' && b.value === x) ||
        (b.operator === 'not_in' && (b.value as readonly string[]).includes(x)) ||
        (b.operator === 'in' &&
          a.attribute !== 'backend' &&
          !(b.value as readonly string[]).includes(x)) ||
        b.operator === 'not_exists';
      if (clash)
        out.push(
          `${a.attribute} = ${x} contradicts ${a.attribute} ${b.operator}${b.value === undefined ? '' : ` ${JSON.stringify(b.value)}`}: no node can satisfy both`,
        );
    }
  }
  return [...new Set(out)];
}

function labelKeyProblem(key: string): string | undefined {
  if (Buffer.byteLength(key) > LABEL_KEY_BYTES_MAX) {
    return `label key ${JSON.stringify(key)} is longer than ${LABEL_KEY_BYTES_MAX} bytes (LABEL_KEY_BYTES_MAX)`;
  }
  if (!LABEL_KEY.test(key)) {
    return `label key ${JSON.stringify(key)} must be a-z 0-9 . _ - starting with a letter or digit`;
  }
  return undefined;
}

/** Validates a node's labels (`--label k=v`): every problem, each naming the label. */
export function validateLabels(labels: Readonly<Record<string, string>>): string[] {
  const out: string[] = [];
  const keys = Object.keys(labels);
  if (keys.length > LABELS_MAX)
    out.push(`labels: ${keys.length} labels, above the maximum ${LABELS_MAX} (LABELS_MAX)`);
  for (const k of keys) {
    const why = labelKeyProblem(k);
    if (why !== undefined) out.push(`labels: ${why}`);
    const v = labels[k];
    if (typeof v !== 'string' || !PRINTABLE.test(v))
      out.push(`labels: the value of ${k} must be printable ASCII`);
    else if (Buffer.byteLength(v) > LABEL_VALUE_BYTES_MAX) {
      out.push(
        `labels: the value of ${k} is longer than ${LABEL_VALUE_BYTES_MAX} bytes (LABEL_VALUE_BYTES_MAX)`,
      );
    }
  }
  return out;
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}
