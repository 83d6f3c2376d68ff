// `nix path-info --json` comes in two shapes: a list of infos, each naming its `path` (Nix 2.8 to
// 2.18), or an object from path to info, null for a path that is not valid (Nix 2.19 on). Both
// readers of it (the store's NixStore and `pcr deploy`'s closure) go through this one function.

/** One path's info as Nix printed it, with `path` always set; fields stay unchecked here. */
export type NixPathInfoJson = { readonly path: string } & Readonly<Record<string, unknown>>;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/** The entries of `nix path-info --json` output in either shape; an invalid path has valid: false. */
export function nixPathInfoEntries(json: string): NixPathInfoJson[] {
  const parsed = JSON.parse(json) as unknown;
  let list: unknown[];
  if (Array.isArray(parsed)) list = parsed;
  else if (isObject(parsed))
    list = Object.entries(parsed).map(([path, j]) => ({
      ...(isObject(j) ? j : { valid: false }),
      path,
    }));
  else throw new Error('nix path-info: the output is neither a list nor an object');
  return list.map((j) => {
    if (!isObject(j) || typeof j.path !== 'string') {
      throw new Error('nix path-info: an entry without a path');
    }
    return j as NixPathInfoJson;
  });
}
