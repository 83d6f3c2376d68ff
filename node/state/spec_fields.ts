// What the spec validators share (vm_spec.ts, health_spec.ts): the shape of an object field, how a
// wrong value is named in a message, and the refusal of unknown fields. Pure.

export type Obj = Record<string, unknown>;
/** Records one error at a field's path; returns undefined so a check can `return fail(...)`. */
export type Fail = (path: string, what: string) => undefined;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

export function unknownFields(o: Obj, known: readonly string[], prefix: string, fail: Fail): void {
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) fail(`${prefix}${k}`, `unknown field (known: ${known.join(', ')})`);
  }
}
