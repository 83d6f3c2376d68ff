// The closure diff of `pcr deploy plan`: what changes between two closures, package by package,
// as `nix store diff-closures` reports it. Pure: it reads only the path infos it is given (store
// path, references, NAR size: what a narinfo or `nix path-info --json` says), so the same code
// serves closures from the local Nix store and from the cluster's store.
//
// Nix's rules, reproduced (nix/deploy/diff.nix.test.ts compares the text with Nix's on real
// closures): a store path's name loses an output suffix (`-bin`, `-dev`, any `-[a-z]+`, `-lib32`,
// `-lib64`), then splits into package name and version at the first dash NOT followed by a letter
// (`builtins.parseDrvName`); paths are grouped by package name, then by version. A package is
// reported when its set of versions changed (`removed → added`, `∅` for none, `ε` for the empty
// version) or its total NAR size moved by at least 8 KiB; names and versions in byte order.

/** What the diff needs of a path's info. */
export interface ClosurePathInfo {
  readonly path: string;
  /** Full store paths; may include the path itself. */
  readonly references: readonly string[];
  readonly narSize: number;
}

/** Paths per closure: a NixOS system is a few thousand; beyond this a closure is refused. */
export const CLOSURE_PATHS_MAX = 100_000;
/** A size change smaller than this is not reported on its own (Nix's threshold). */
export const SIZE_DELTA_SHOWN_BYTES_MIN = 8 * 1024;

export class ClosureError extends Error {}

/** One package whose versions or size changed. */
export interface PackageChange {
  readonly name: string;
  /** Versions only before (sorted; '' is the empty version). */
  readonly removed: readonly string[];
  /** Versions only after (sorted). */
  readonly added: readonly string[];
  /** After minus before, over every path of the package. */
  readonly sizeDeltaBytes: number;
}

export interface ClosureDiff {
  /** The packages Nix would print, by name. */
  readonly changes: readonly PackageChange[];
  readonly pathsBefore: number;
  readonly pathsAfter: number;
  readonly bytesBefore: number;
  readonly bytesAfter: number;
  /** The closures differ in at least one path (even when no package line shows it). */
  readonly differs: boolean;
}

const STORE_PREFIX = /^\/nix\/store\/[0-9a-z]{32}-/;
/** Nix's output-name suffix: the greedy rest, then `-<letters>` (or lib32/lib64) at the end. */
const OUTPUT_SUFFIX = /^(.*)-([a-z]+|lib32|lib64)$/;

/** A store path's package name, version and output, split as Nix's diff-closures does. */
export function splitStoreName(path: string): { name: string; version: string; output: string } {
  if (!STORE_PREFIX.test(path)) throw new ClosureError(`not a store path: ${path.slice(0, 200)}`);
  let full = path.replace(STORE_PREFIX, '');
  let output = '';
  const m = OUTPUT_SUFFIX.exec(full);
  if (m !== null) {
    full = m[1]!;
    output = m[2]!;
  }
  return { ...parseDrvName(full), output };
}

/** `builtins.parseDrvName`: the name ends at the first dash not followed by a letter. */
export function parseDrvName(s: string): { name: string; version: string } {
  for (let i = 0; i + 1 < s.length; i++) {
    if (s[i] === '-' && !/[A-Za-z]/.test(s[i + 1]!)) {
      return { name: s.slice(0, i), version: s.slice(i + 1) };
    }
  }
  return { name: s, version: '' };
}

/**
 * The closure of `roots` (the roots and everything they reference, transitively) from `infos`.
 * A path without an info, or more than CLOSURE_PATHS_MAX paths, is refused.
 */
export function closureOf(
  roots: readonly string[],
  infos: ReadonlyMap<string, ClosurePathInfo>,
): ClosurePathInfo[] {
  const seen = new Map<string, ClosurePathInfo>();
  const queue = [...roots];
  while (queue.length > 0) {
    const path = queue.pop()!;
    if (seen.has(path)) continue;
    const info = infos.get(path);
    if (info === undefined) throw new ClosureError(`no path info for ${path}`);
    if (seen.size >= CLOSURE_PATHS_MAX) {
      throw new ClosureError(
        `the closure has more than CLOSURE_PATHS_MAX ${CLOSURE_PATHS_MAX} paths`,
      );
    }
    seen.set(path, info);
    for (const r of info.references) if (!seen.has(r)) queue.push(r);
  }
  return [...seen.values()];
}

/** name -> version -> summed NAR size. */
type Grouped = Map<string, Map<string, number>>;

function group(closure: readonly ClosurePathInfo[]): { grouped: Grouped; bytes: number } {
  if (closure.length > CLOSURE_PATHS_MAX) {
    throw new ClosureError(
      `${closure.length} paths: more than CLOSURE_PATHS_MAX ${CLOSURE_PATHS_MAX}`,
    );
  }
  const grouped: Grouped = new Map();
  const seen = new Set<string>();
  let bytes = 0;
  for (const info of closure) {
    if (seen.has(info.path)) continue;
    seen.add(info.path);
    if (!Number.isSafeInteger(info.narSize) || info.narSize < 0) {
      throw new ClosureError(`${info.path}: narSize ${info.narSize} is not a size`);
    }
    const { name, version } = splitStoreName(info.path);
    const versions = grouped.get(name) ?? new Map<string, number>();
    versions.set(version, (versions.get(version) ?? 0) + info.narSize);
    grouped.set(name, versions);
    bytes += info.narSize;
  }
  return { grouped, bytes };
}

/** Byte order, as C++'s std::string comparison (store names are ASCII). */
function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sum(versions: ReadonlyMap<string, number> | undefined): number {
  let n = 0;
  for (const v of versions?.values() ?? []) n += v;
  return n;
}

/** The package changes between two closures (each a list of path infos, the closure whole). */
export function diffClosures(
  before: readonly ClosurePathInfo[],
  after: readonly ClosurePathInfo[],
): ClosureDiff {
  const b = group(before);
  const a = group(after);
  const names = [...new Set([...b.grouped.keys(), ...a.grouped.keys()])].sort(byteOrder);
  const changes: PackageChange[] = [];
  for (const name of names) {
    const bv = b.grouped.get(name) ?? new Map<string, number>();
    const av = a.grouped.get(name) ?? new Map<string, number>();
    const removed = [...bv.keys()].filter((v) => !av.has(v)).sort(byteOrder);
    const added = [...av.keys()].filter((v) => !bv.has(v)).sort(byteOrder);
    const sizeDeltaBytes = sum(av) - sum(bv);
    const shown =
      removed.length > 0 ||
      added.length > 0 ||
      Math.abs(sizeDeltaBytes) >= SIZE_DELTA_SHOWN_BYTES_MIN;
    if (shown) changes.push({ name, removed, added, sizeDeltaBytes });
  }
  const pathsBefore = new Set(before.map((i) => i.path));
  const pathsAfter = new Set(after.map((i) => i.path));
  const differs =
    pathsBefore.size !== pathsAfter.size || [...pathsAfter].some((p) => !pathsBefore.has(p));
  return {
    changes,
    pathsBefore: pathsBefore.size,
    pathsAfter: pathsAfter.size,
    bytesBefore: b.bytes,
    bytesAfter: a.bytes,
    differs,
  };
}

function showVersions(versions: readonly string[]): string {
  if (versions.length === 0) return '∅';
  return versions.map((v) => (v === '' ? 'ε' : v)).join(', ');
}

/**
 * A size delta in KiB with a sign and one decimal, as C's `%+.1f` prints `bytes / 1024.0`: exact
 * halves round to even (8448 bytes is 8.25 KiB: `+8.2`), in integers so no float rounding enters.
 */
export function formatKiB(deltaBytes: number): string {
  const abs = Math.abs(deltaBytes);
  // tenths of a KiB = abs * 10 / 1024 = abs * 5 / 512
  let tenths = Math.floor((abs * 5) / 512);
  const rest = (abs * 5) % 512;
  if (rest * 2 > 512 || (rest * 2 === 512 && tenths % 2 === 1)) tenths++;
  const sign = deltaBytes < 0 ? '-' : '+';
  return `${sign}${Math.floor(tenths / 10)}.${tenths % 10} KiB`;
}

/** One package's line, as Nix prints it (without its colours). */
export function formatChange(c: PackageChange): string {
  const items: string[] = [];
  if (c.removed.length > 0 || c.added.length > 0) {
    items.push(`${showVersions(c.removed)} → ${showVersions(c.added)}`);
  }
  if (Math.abs(c.sizeDeltaBytes) >= SIZE_DELTA_SHOWN_BYTES_MIN)
    items.push(formatKiB(c.sizeDeltaBytes));
  return `${c.name}: ${items.join(', ')}`;
}

/** The package lines, one per change, in Nix's order. */
export function formatClosureDiff(d: ClosureDiff, indent = ''): string[] {
  return d.changes.map((c) => `${indent}${formatChange(c)}`);
}
