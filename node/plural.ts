// Counts in messages people read: `1 path`, `2 paths` (one helper for the CLI and the node).

/** `n` and the noun, singular for exactly one (`many` for irregular plurals). */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
