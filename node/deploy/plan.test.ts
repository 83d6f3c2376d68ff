// The plan of `pcr deploy plan`: what counts as a change (closure, spec fields, the update
// policy's given fields), a first version, and the closure walk over a lookup with its bound.
import { describe, expect, it } from 'vitest';
import { type VmSpec, validateVmSpec } from '../state/vm_spec.ts';
import { CLOSURE_PATHS_MAX, type ClosurePathInfo } from './diff.ts';
import {
  CLOSURE_LOOKUP_BATCH_PATHS,
  instanceChanges,
  planDeploy,
  planText,
  walkClosure,
} from './plan.ts';

const p = (name: string, h = 'a'): string => `/nix/store/${h.repeat(32)}-${name}`;
const info = (path: string, narSize: number, references: string[] = []): ClosurePathInfo => ({
  path,
  narSize,
  references,
});

const lib = info(p('lib-1.0'), 20_000);
const runner1 = info(p('runner-1.0'), 1000, [lib.path]);
const lib2 = info(p('lib-1.1', 'b'), 40_000);
const runner2 = info(p('runner-1.0', 'c'), 1000, [lib2.path]);
const spec1 = { version: 1, name: 'web', runner: runner1.path, memoryMiB: 64 };

const valid = (x: Record<string, unknown>): VmSpec => {
  const r = validateVmSpec(x);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.spec;
};

describe('instanceChanges: what the rollout would do to each instance', () => {
  const v1 = valid({ ...spec1, count: 3 });
  const rows = ['web-0', 'web-1', 'web-2'].map((name, k) => ({
    name,
    node: k === 2 ? '' : `node${k}`,
    spec: { ...v1, name },
  }));

  it('a new runner replaces every instance where it runs; a bigger count starts new names', () => {
    const next = valid({ ...spec1, runner: runner2.path, count: 4 });
    expect(instanceChanges(next, rows)).toEqual({
      start: ['web-3'],
      replace: [
        { name: 'web-0', node: 'node0' },
        { name: 'web-1', node: 'node1' },
        { name: 'web-2', node: '' },
      ],
      stop: [],
      unchanged: 0,
    });
  });

  it('a smaller count with the same spec stops the extra instances and keeps the rest (placement fields do not restart)', () => {
    const next = valid({ ...spec1, count: 2 });
    expect(instanceChanges(next, rows)).toEqual({
      start: [],
      replace: [],
      stop: [{ name: 'web-2', node: '' }],
      unchanged: 2,
    });
    const plan = planDeploy(
      'web',
      { spec: next as never },
      [runner1, lib],
      { n: 1, spec: v1 as never },
      [runner1, lib],
      { next, rows },
    );
    expect(
      planText(plan, (id) => `name-of-${id}`)
        .split('\n')
        .slice(-3),
    ).toEqual(['instances:', '  stop    web-2 (unplaced)', '  keep    2 running as they are']);
  });

  it('prints replaced instances with their node by the name the caller gives', () => {
    const next = valid({ ...spec1, memoryMiB: 128, count: 3 });
    const plan = planDeploy(
      'web',
      { spec: next as never },
      [runner1, lib],
      { n: 1, spec: v1 as never },
      [runner1, lib],
      { next, rows },
    );
    expect(planText(plan, (id) => `name-of-${id}`)).toContain(
      '  replace web-0 (on name-of-node0), web-1 (on name-of-node1), web-2 (unplaced)',
    );
  });
});

describe('planDeploy', () => {
  it('no change: the same closure, spec and given policy fields', () => {
    const plan = planDeploy(
      'web',
      { spec: spec1, update: { maxParallel: 2 } },
      [runner1, lib],
      { n: 3, spec: spec1, update: { maxParallel: 2, minHealthyMs: 10_000 } },
      [runner1, lib],
    );
    expect(plan).toMatchObject({ current: 3, changes: false, specFields: [], updateFields: [] });
    expect(planText(plan)).toContain('web: no changes against version 3');
  });

  it('a new closure shows package lines and the spec field that changed', () => {
    const spec2 = { ...spec1, runner: runner2.path };
    const plan = planDeploy('web', { spec: spec2 }, [runner2, lib2], { n: 3, spec: spec1 }, [
      runner1,
      lib,
    ]);
    expect(plan.changes).toBe(true);
    expect(plan.specFields).toEqual(['runner']);
    expect(planText(plan).split('\n')).toEqual([
      'web: changes against version 3',
      'closure:',
      '  lib: 1.0 → 1.1, +19.5 KiB',
      'closure size: 2 -> 2 paths, 0.0 MiB -> 0.0 MiB',
      'spec: runner changed',
    ]);
  });

  it('a spec change alone (memory) and a policy field given with another value are changes', () => {
    const plan = planDeploy(
      'web',
      { spec: { ...spec1, memoryMiB: 128 }, update: { maxParallel: 3 } },
      [runner1, lib],
      { n: 1, spec: spec1, update: { maxParallel: 1 } },
      [runner1, lib],
    );
    expect(plan).toMatchObject({
      changes: true,
      specFields: ['memoryMiB'],
      updateFields: ['maxParallel'],
    });
    expect(plan.closure.differs).toBe(false);
  });

  it('a deployment not submitted yet: everything is added', () => {
    const plan = planDeploy('web', { spec: spec1 }, [runner1, lib], undefined, []);
    expect(plan.changes).toBe(true);
    expect(plan.current).toBeUndefined();
    expect(planText(plan)).toContain('web: not deployed yet; version 1 would be submitted');
    expect(planText(plan)).toContain('lib: ∅ → 1.0, +19.5 KiB');
  });
});

describe('walkClosure', () => {
  it('asks for each path once, in batches, and follows references', async () => {
    const infos = new Map([runner1, lib, runner2, lib2].map((i) => [i.path, i]));
    const asked: string[][] = [];
    const closure = await walkClosure([runner1.path, runner1.path], async (paths) => {
      asked.push([...paths]);
      return new Map(paths.flatMap((x) => (infos.has(x) ? [[x, infos.get(x)!] as const] : [])));
    });
    expect(closure.map((i) => i.path).sort()).toEqual([lib.path, runner1.path].sort());
    expect(asked).toEqual([[runner1.path], [lib.path]]);
  });

  it('batches at CLOSURE_LOOKUP_BATCH_PATHS and refuses more than CLOSURE_PATHS_MAX paths', async () => {
    const n = CLOSURE_PATHS_MAX + 1;
    const leaf = (i: number) =>
      p(`x-${i}`, 'd').replace('d'.repeat(32), i.toString(32).padStart(32, '0'));
    const root = info(
      p('root-1', 'z'),
      1,
      Array.from({ length: n - 1 }, (_, i) => leaf(i)),
    );
    let largest = 0;
    const lookup = async (paths: readonly string[]) => {
      largest = Math.max(largest, paths.length);
      return new Map(paths.map((x) => [x, x === root.path ? root : info(x, 1)] as const));
    };
    await expect(walkClosure([root.path], lookup)).rejects.toThrow(/CLOSURE_PATHS_MAX/);
    expect(largest).toBe(CLOSURE_LOOKUP_BATCH_PATHS);
    const atMax = info(root.path, 1, root.references.slice(0, CLOSURE_PATHS_MAX - 1));
    const ok = await walkClosure(
      [root.path],
      async (paths) =>
        new Map(paths.map((x) => [x, x === root.path ? atMax : info(x, 1)] as const)),
    );
    expect(ok).toHaveLength(CLOSURE_PATHS_MAX);
  });

  it('refuses a path the lookup does not know', async () => {
    await expect(walkClosure([runner1.path], async () => new Map())).rejects.toThrow(
      /no path info for .*runner-1.0/,
    );
  });
});
