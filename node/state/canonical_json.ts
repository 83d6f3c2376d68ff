// Canonical JSON: object keys sorted, no whitespace, so that equal values give equal bytes. One
// definition for the spec hash, the Maelstrom node's keys and values, and the checker's models.
// `undefined` reads as JSON does: an absent key in an object, `null` anywhere else.

export function canonicalJson(value: unknown): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}
