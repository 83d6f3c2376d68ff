// Figures for the checker: time to check histories recorded from a sequential execution (always
// linearizable), the same with one read corrupted (a violation), and the budget on a pathological
// history. Run: npx tsx jepsen/checker/bench.ts [--html DIR] (DIR: where to write a sample timeline)

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  events,
  historyFromExecution,
  randomPlan,
  read,
  write,
} from '../../test/checker/histories.ts';
import { pairHistory } from './history.ts';
import { checkOperations } from './linearizability.ts';
import { casRegister } from './model.ts';
import { renderReportHtml } from './render.ts';

/** Runs per case (the median is printed); RUNS=1 for a quick look. */
const RUNS = Number(process.env.RUNS ?? 5);
const { values } = parseArgs({ options: { html: { type: 'string' } } });

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function row(name: string, ops: number, verdict: string, ms: number[], steps: number): void {
  const m = median(ms);
  const perOpUs = (m * 1000) / ops;
  console.log(
    `${name.padEnd(44)} ${String(ops).padStart(6)} ops  ${verdict.padEnd(9)} ` +
      `${m.toFixed(1).padStart(8)} ms  ${perOpUs.toFixed(1).padStart(6)} µs/op  ${steps} steps`,
  );
}

const FATES = { info: 0.02, phantom: 0.01, failed: 0.02 };
const cases: [name: string, ops: number, processes: number, keys: number][] = [
  ['1,000 ops, 5 processes, 3 keys', 1_000, 5, 3],
  ['10,000 ops, 5 processes, 3 keys', 10_000, 5, 3],
  ['100,000 ops, 10 processes, 100 keys', 100_000, 10, 100],
  ['1,000 ops, 10 processes, 1 key', 1_000, 10, 1],
  ['3,000 ops, 10 processes, 1 key', 3_000, 10, 1],
];
const KEYS = Array.from({ length: 100 }, (_, i) => `k${i}`);

for (const [name, n, processes, keys] of cases) {
  const g = historyFromExecution(
    randomPlan(7, n, processes, keys, FATES),
    processes,
    KEYS.slice(0, keys),
  );
  const ops = pairHistory(g.events).operations;
  const times: number[] = [];
  let last = checkOperations(casRegister, ops);
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    last = checkOperations(casRegister, ops);
    times.push(performance.now() - t0);
  }
  row(name, ops.length, last.verdict, times, last.steps);

  // The same history with one read (in the middle) returning a value never written.
  const at = g.okReadCompletions[Math.floor(g.okReadCompletions.length / 2)]!;
  const corrupted = g.events.map((e, i) => (i === at ? { ...e, value: -1 } : e));
  const bad = pairHistory(corrupted);
  const badTimes: number[] = [];
  let badResult = checkOperations(casRegister, bad.operations);
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    badResult = checkOperations(casRegister, bad.operations);
    badTimes.push(performance.now() - t0);
    if (badResult.verdict === 'unknown') break; // it used the whole budget: once is enough
  }
  row(`  ...one read corrupted`, ops.length, badResult.verdict, badTimes, badResult.steps);
  const lead = badResult.perKey.find((k) => k.furthestStuck)?.furthestStuck;
  if (badResult.verdict === 'unknown' && lead !== undefined) {
    const right = lead.op.output === -1 ? 'the corrupted read' : 'not the corrupted read';
    console.log(`  furthest stuck on operation ${lead.op.id}: ${right}`);
  }
  if (values.html !== undefined && n === 1_000 && keys === 3) {
    const path = join(values.html, 'checker-sample-violation.html');
    writeFileSync(path, renderReportHtml(badResult, bad, casRegister, { source: name }));
    console.log(`  sample timeline: ${path}`);
  }
}

// n concurrent writes of distinct values, then a read of a value nobody wrote: 2^n orders.
const hard = events(
  ...Array.from({ length: 40 }, (_, p) => write(p, p, 0, 100)),
  read(40, -1, 200, 201),
);
const t0 = performance.now();
const r = checkOperations(casRegister, pairHistory(hard).operations, { timeoutMs: 1_000 });
row(
  'pathological, 40 concurrent writes, 1 s budget',
  41,
  r.verdict,
  [performance.now() - t0],
  r.steps,
);
