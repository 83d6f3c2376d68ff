// The project's import graph, read from the source text, and the rules that keep its arrows
// pointing down: the pure core reaches no I/O even transitively, the product imports nothing from
// the simulator, the harness, the benchmarks or the test helpers, and no import hides behind a
// variable. imports.test.ts enforces the rules; `npm run check:imports` prints what breaks them.
// It reads `import ... from '...'` (not `import type`), `export ... from '...'`, `import '...'` and `import('...')`;
// a dynamic import whose argument is not a string literal is itself reported (it is hidden).

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is test/import_graph.ts). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Source folders the graph covers. */
const SOURCE_DIRS = ['consensus', 'node', 'sim', 'jepsen', 'bench', 'test'];

export interface ModuleImports {
  /** Repository-relative paths of the project modules this one imports. */
  local: string[];
  /** Project modules imported for their types only (no arrow at run time, still coupling). */
  typeOnly: string[];
  /** Package and builtin specifiers (`node:fs`, `level`, `@libp2p/tcp`). */
  packages: string[];
  /** Dynamic imports whose specifier is not a literal, as written. */
  hidden: string[];
}

export type ImportGraph = Map<string, ModuleImports>;

// Group 1 is `type` for a type-only import, which the compiler erases (verbatimModuleSyntax):
// it is no arrow at run time, so the rules do not count it.
const STATIC_IMPORT = /(?:^|\n)\s*(?:import|export)\s+(type\s)?[^'";]*?from\s*['"]([^'"]+)['"]/g;
const BARE_IMPORT = /(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g;
const DYNAMIC_IMPORT = /\bimport\(\s*([^)]*?)\s*\)/g;

function listSources(dir: string, out: string[]): void {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'testdata') continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) listSources(path, out);
    else if (/\.(ts|mjs)$/.test(name)) out.push(path);
  }
}

/** Strips comments, so that an example in a comment is not taken for an import. */
function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

function parseImports(file: string, text: string): ModuleImports {
  const code = stripComments(text);
  const specifiers: string[] = [];
  const hidden: string[] = [];
  const typeSpecifiers: string[] = [];
  for (const m of code.matchAll(STATIC_IMPORT))
    (m[1] === undefined ? specifiers : typeSpecifiers).push(m[2]!);
  for (const m of code.matchAll(BARE_IMPORT)) specifiers.push(m[1]!);
  for (const m of code.matchAll(DYNAMIC_IMPORT)) {
    const literal = /^['"]([^'"]+)['"]$/.exec(m[1]!);
    if (literal) specifiers.push(literal[1]!);
    else hidden.push(m[1]!);
  }
  const toPath = (s: string) =>
    relative(ROOT, resolve(dirname(file), s))
      .split(sep)
      .join('/');
  const local = specifiers.filter((s) => s.startsWith('.')).map(toPath);
  const typeOnly = typeSpecifiers.filter((s) => s.startsWith('.')).map(toPath);
  const packages = specifiers.filter((s) => !s.startsWith('.'));
  return {
    local: [...new Set(local)],
    typeOnly: [...new Set(typeOnly)],
    packages: [...new Set(packages)],
    hidden,
  };
}

/** Reads every source file under the covered folders. */
export function readImportGraph(root: string = ROOT): ImportGraph {
  const files: string[] = [];
  for (const d of SOURCE_DIRS) listSources(join(root, d), files);
  const graph: ImportGraph = new Map();
  for (const f of files) {
    const rel = relative(root, f).split(sep).join('/');
    graph.set(rel, parseImports(f, readFileSync(f, 'utf8')));
  }
  return graph;
}

/** Every module `start` reaches, itself included, with the path by which it was first reached. */
export function reachable(graph: ImportGraph, start: string): Map<string, string[]> {
  const paths = new Map<string, string[]>([[start, [start]]]);
  const queue = [start];
  while (queue.length > 0) {
    const mod = queue.shift()!;
    for (const next of graph.get(mod)?.local ?? []) {
      if (paths.has(next)) continue;
      paths.set(next, [...paths.get(mod)!, next]);
      queue.push(next);
    }
  }
  return paths;
}

// ---- The rules ----

/** Modules that decide and must stay pure: no file system, network, processes or databases. */
export function isPureModule(path: string): boolean {
  if (isTestCode(path)) return false;
  if (path.startsWith('consensus/')) return path !== 'consensus/demo.ts';
  return (
    path.startsWith('node/state/') ||
    path.startsWith('node/sched/') ||
    path === 'node/agent/reconciler.ts' ||
    path === 'node/agent/health_verdict.ts' ||
    path === 'node/vmm/restart.ts' ||
    path === 'node/raft_timing.ts' ||
    path === 'node/deploy/diff.ts' ||
    path === 'node/deploy/plan.ts' ||
    /^node\/store\/(nar|narinfo|keys|base32|store_path|hash|errors|cache_auth)\.ts$/.test(path) ||
    path === 'jepsen/checker/linearizability.ts' ||
    path === 'jepsen/checker/model.ts' ||
    path === 'jepsen/checker/history.ts'
  );
}

/** Packages that do I/O (the file system, sockets, processes, a database, the p2p stack). */
export function isIoPackage(specifier: string): boolean {
  return (
    /^node:(fs|fs\/promises|net|child_process|http|https|dgram|readline|worker_threads)$/.test(
      specifier,
    ) ||
    /^(fs|net|child_process|http|https)$/.test(specifier) ||
    specifier === 'libp2p' ||
    /^@libp2p\//.test(specifier) ||
    /^@chainsafe\//.test(specifier) ||
    specifier === 'level' ||
    specifier === 'execa'
  );
}

/** Tests and their helpers: *.test.ts, and anything under a `test/` folder. */
export function isTestCode(path: string): boolean {
  return path.endsWith('.test.ts') || path.startsWith('test/') || path.includes('/test/');
}

/** The product: what `pcr` runs (node/ and consensus/), tests excluded. */
export function isProduct(path: string): boolean {
  return (path.startsWith('node/') || path.startsWith('consensus/')) && !isTestCode(path);
}

/** Where the product must not reach: the simulator, the harness, the benchmarks, test code. */
function isAboveProduct(path: string): boolean {
  return (
    path.startsWith('sim/') ||
    path.startsWith('jepsen/') ||
    path.startsWith('bench/') ||
    isTestCode(path)
  );
}

export interface Violation {
  rule: string;
  from: string;
  to: string;
  /** The chain of imports from `from` to `to`. */
  via: string[];
}

/** Every import that points up, and every hidden import. */
export function violations(graph: ImportGraph): Violation[] {
  const out: Violation[] = [];
  for (const [mod, imports] of graph) {
    for (const h of imports.hidden) {
      out.push({ rule: 'hidden import (not a literal)', from: mod, to: h, via: [mod] });
    }
    if (isProduct(mod)) {
      for (const to of [...imports.local, ...imports.typeOnly].filter(isAboveProduct)) {
        out.push({ rule: 'product imports sim/jepsen/bench/test', from: mod, to, via: [mod, to] });
      }
    }
    if (mod.startsWith('bench/')) {
      for (const to of imports.local.filter((t) => isTestCode(t) && !t.startsWith('test/'))) {
        out.push({
          rule: 'bench imports a test helper outside test/',
          from: mod,
          to,
          via: [mod, to],
        });
      }
    }
    if (isTestCode(mod) && !mod.endsWith('.test.ts') && !mod.startsWith('test/')) {
      out.push({ rule: 'test helper outside test/', from: mod, to: mod, via: [mod] });
    }
    if (isPureModule(mod)) out.push(...pureViolations(graph, mod));
  }
  return out;
}

function pureViolations(graph: ImportGraph, mod: string): Violation[] {
  const out: Violation[] = [];
  for (const [reached, via] of reachable(graph, mod)) {
    for (const p of graph.get(reached)?.packages ?? []) {
      if (isIoPackage(p)) out.push({ rule: 'pure module reaches I/O', from: mod, to: p, via });
    }
  }
  return out;
}

/** Import cycles among the product's modules (type-only imports count), each as its members. */
export function productCycles(graph: ImportGraph): string[][] {
  // Tarjan's strongly connected components, over product modules only.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    const mod = graph.get(v);
    const edges = [...(mod?.local ?? []), ...(mod?.typeOnly ?? [])];
    for (const w of edges.filter((w) => isProduct(w) && graph.has(w))) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1) cycles.push(component.sort());
  };
  for (const v of [...graph.keys()].filter(isProduct).sort()) if (!index.has(v)) visit(v);
  return cycles;
}

/** Prints the violations and cycles; exit code 1 when there is any. */
export function main(): number {
  const graph = readImportGraph();
  const found = violations(graph);
  for (const v of found)
    console.log(`${v.rule}: ${v.via.join(' -> ')}${v.via.at(-1) === v.to ? '' : ` -> ${v.to}`}`);
  const cycles = productCycles(graph);
  for (const c of cycles) console.log(`import cycle: ${c.join(', ')}`);
  console.log(`${graph.size} modules; ${found.length} upward arrows; ${cycles.length} cycles`);
  return found.length + cycles.length > 0 ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main();
}
