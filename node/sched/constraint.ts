// Node attributes and the constraint language over them: which attributes exist, what each
// operator means, how ordered values compare (numbers, dotted versions), and the text a reason
// shows ("label.zone = a"). Pure. Used by validation (spec.ts), feasibility and ranking.

/** What a node exposes to constraints and affinities. */
export interface NodeAttrs {
  readonly name: string;
  readonly arch: string;
  /** The backends the node proved it can run. */
  readonly backends: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
}

export type Operator =
  | '='
  | '!='
  | 'in'
  | 'not_in'
  | 'exists'
  | 'not_exists'
  | '<'
  | '<='
  | '>'
  | '>=';
export const OPERATORS: readonly Operator[] = [
  '=',
  '!=',
  'in',
  'not_in',
  'exists',
  'not_exists',
  '<',
  '<=',
  '>',
  '>=',
];
export const ORDERED_OPERATORS: readonly Operator[] = ['<', '<=', '>', '>='];

export interface Constraint {
  readonly attribute: string;
  readonly operator: Operator;
  /** A string for `=`, `!=` and the ordered operators; a list for `in`/`not_in`; none for `exists`. */
  readonly value?: string | readonly string[];
}

export interface Affinity extends Constraint {
  /** -100..100, not 0: how much a match is preferred (negative: avoided). */
  readonly weight: number;
}

export const LABEL_PREFIX = 'label.';
const FIXED_ATTRIBUTES = ['name', 'arch', 'backend'];

/** Why an attribute name is not one we know, or undefined when it is. */
export function attributeProblem(attribute: string): string | undefined {
  if (FIXED_ATTRIBUTES.includes(attribute)) return undefined;
  if (attribute.startsWith(LABEL_PREFIX) && attribute.length > LABEL_PREFIX.length)
    return undefined;
  return `unknown attribute ${JSON.stringify(attribute)} (known: name, arch, backend, label.<key>; a label is label.${attribute})`;
}

/** The node's values of an attribute: none when it lacks it, several for `backend`. */
export function attributeValues(attribute: string, n: NodeAttrs): readonly string[] {
  if (attribute === 'name') return [n.name];
  if (attribute === 'arch') return [n.arch];
  if (attribute === 'backend') return n.backends;
  const key = attribute.slice(LABEL_PREFIX.length);
  return Object.hasOwn(n.labels, key) ? [n.labels[key]!] : [];
}

/** Whether the node satisfies the constraint. A node lacking the attribute satisfies only the
 * negative operators (`!=`, `not_in`, `not_exists`): "zone != a" holds for a node without a zone. */
export function matches(c: Constraint, n: NodeAttrs): boolean {
  const values = attributeValues(c.attribute, n);
  switch (c.operator) {
    case '=':
      return values.includes(c.value as string);
    case '!=':
      return !values.includes(c.value as string);
    case 'in':
      return values.some((v) => (c.value as readonly string[]).includes(v));
    case 'not_in':
      return !values.some((v) => (c.value as readonly string[]).includes(v));
    case 'exists':
      return values.length > 0;
    case 'not_exists':
      return values.length === 0;
    default:
      return values.some((v) => orderedHolds(c.operator, v, c.value as string));
  }
}

function orderedHolds(op: Operator, nodeValue: string, bound: string): boolean {
  const cmp = compareOrdered(nodeValue, bound);
  if (cmp === undefined) return false;
  if (op === '<') return cmp < 0;
  if (op === '<=') return cmp <= 0;
  if (op === '>') return cmp > 0;
  return cmp >= 0;
}

const DECIMAL = /^-?\d+(\.\d+)?$/;
const VERSION = /^\d+(\.\d+)+$/;

/** Whether a value can take part in an ordered comparison (a number or a dotted version). */
export function isOrdered(v: string): boolean {
  return DECIMAL.test(v) || VERSION.test(v);
}

/**
 * Orders two values: as decimals when both are numbers with at most one dot ("2.5" > "2.10"), else
 * as dotted versions component by component ("1.2.10" > "1.2.9"); undefined when they are neither.
 */
export function compareOrdered(a: string, b: string): number | undefined {
  if (DECIMAL.test(a) && DECIMAL.test(b)) return Math.sign(Number(a) - Number(b));
  if (!(VERSION.test(a) || DECIMAL.test(a)) || !(VERSION.test(b) || DECIMAL.test(b))) {
    return undefined;
  }
  if (a.startsWith('-') || b.startsWith('-')) return undefined;
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/** The constraint as a reason shows it: `label.zone = a`, `arch in [x86_64, aarch64]`. */
export function constraintText(c: Constraint): string {
  if (c.value === undefined) return `${c.attribute} ${c.operator}`;
  const v = typeof c.value === 'string' ? c.value : `[${c.value.join(', ')}]`;
  return `${c.attribute} ${c.operator} ${v}`;
}
