// Arrows point down: the pure core reaches no I/O even transitively, the product imports nothing
// from the simulator, the harness, the benchmarks or the tests, no import hides behind a variable,
// test helpers live in test/, and the product has no import cycle. The rules are in import_graph.ts;
// the first tests show on small graphs that each rule catches what it is for.

import { describe, expect, it } from 'vitest';
import {
  type ImportGraph,
  isPureModule,
  type ModuleImports,
  productCycles,
  readImportGraph,
  violations,
} from './import_graph.ts';

function graphOf(modules: Record<string, Partial<ModuleImports>>): ImportGraph {
  return new Map(
    Object.entries(modules).map(([path, m]) => [
      path,
      { local: [], typeOnly: [], packages: [], hidden: [], ...m },
    ]),
  );
}

describe('the rules catch what they are for', () => {
  it('a pure module that reaches node:fs through another module', () => {
    const found = violations(
      graphOf({
        'node/state/vms.ts': { local: ['node/vmm/spec.ts'] },
        'node/vmm/spec.ts': { packages: ['node:fs/promises', 'node:crypto'] },
      }),
    );
    expect(found).toEqual([
      {
        rule: 'pure module reaches I/O',
        from: 'node/state/vms.ts',
        to: 'node:fs/promises',
        via: ['node/state/vms.ts', 'node/vmm/spec.ts'],
      },
    ]);
  });

  it('a type-only import is no arrow at run time', () => {
    const g = graphOf({
      'node/agent/reconciler.ts': { typeOnly: ['node/vmm/supervisor.ts'] },
      'node/vmm/supervisor.ts': { packages: ['node:fs'] },
    });
    expect(violations(g)).toEqual([]);
  });

  it('the product importing the harness, the simulator or a test helper', () => {
    const g = graphOf({
      'node/cli/maelstrom.ts': { local: ['jepsen/maelstrom/stdio.ts'] },
      'node/cli/sim.ts': { hidden: ['url.href'] },
      'node/store/fixtures.ts': { local: ['test/tools.ts'] },
      'jepsen/maelstrom/stdio.ts': {},
      'test/tools.ts': {},
    });
    expect(violations(g).map((v) => `${v.rule}: ${v.from} -> ${v.to}`)).toEqual([
      'product imports sim/jepsen/bench/test: node/cli/maelstrom.ts -> jepsen/maelstrom/stdio.ts',
      'hidden import (not a literal): node/cli/sim.ts -> url.href',
      'product imports sim/jepsen/bench/test: node/store/fixtures.ts -> test/tools.ts',
    ]);
  });

  it('a test helper outside test/, and a benchmark importing one', () => {
    const g = graphOf({
      'bench/vm.ts': { local: ['node/vmm/test/helpers.ts', 'test/vmm/fixture.ts'] },
      'node/vmm/test/helpers.ts': {},
      'test/vmm/fixture.ts': {},
    });
    expect(violations(g).map((v) => `${v.rule}: ${v.from} -> ${v.to}`)).toEqual([
      'bench imports a test helper outside test/: bench/vm.ts -> node/vmm/test/helpers.ts',
      'test helper outside test/: node/vmm/test/helpers.ts -> node/vmm/test/helpers.ts',
    ]);
  });

  it('a cycle among product modules, type-only imports included', () => {
    const g = graphOf({
      'node/store/store.ts': { local: ['node/store/ingest.ts'] },
      'node/store/ingest.ts': { typeOnly: ['node/store/store.ts'] },
      'node/store/keys.ts': { typeOnly: ['node/store/store.ts'] },
    });
    expect(productCycles(g)).toEqual([['node/store/ingest.ts', 'node/store/store.ts']]);
  });
});

describe("the project's import graph", () => {
  const graph = readImportGraph();

  it('reads every layer (a scan that finds nothing would pass every rule)', () => {
    for (const dir of ['consensus/', 'node/', 'sim/', 'jepsen/', 'bench/', 'test/']) {
      expect([...graph.keys()].filter((p) => p.startsWith(dir)).length).toBeGreaterThan(0);
    }
    const pure = [...graph.keys()].filter(isPureModule);
    for (const mod of [
      'consensus/rawnode.ts',
      'node/state/machine.ts',
      'node/state/vm_spec.ts',
      'node/agent/reconciler.ts',
      'node/vmm/restart.ts',
      'node/store/nar.ts',
      'node/store/keys.ts',
    ]) {
      expect(pure).toContain(mod);
    }
    expect(graph.get('node/state/vms.ts')?.local).toContain('node/state/vm_spec.ts');
  });

  it('has no arrow pointing up', () => {
    const found = violations(graph).map(
      (v) => `${v.rule}: ${v.via.join(' -> ')}${v.via.at(-1) === v.to ? '' : ` -> ${v.to}`}`,
    );
    expect(found).toEqual([]);
  });

  it('has no import cycle in the product', () => {
    expect(productCycles(graph)).toEqual([]);
  });

  it('keeps consensus/ free of everything above it', () => {
    const up = [...graph]
      .filter(([p]) => p.startsWith('consensus/') && !p.endsWith('.test.ts'))
      .flatMap(([p, m]) => [...m.local, ...m.typeOnly].map((to) => `${p} -> ${to}`))
      .filter((arrow) => !arrow.split(' -> ')[1]!.startsWith('consensus/'));
    expect(up).toEqual([]);
  });
});
