// Whole runs: one seed replays byte for byte; a small sweep with every nemesis finds nothing and
// exercises snapshots, compaction and snapshot installs; the history is what the checker reads.

import { describe, expect, it } from 'vitest';
import { pairHistory } from '../jepsen/checker/index.ts';
import { type RunResult, runSimulation } from './run.ts';

const ALL = ['partition', 'crash', 'pause', 'drift'] as const;

describe('runSimulation', () => {
  it('the same seed gives the same history, byte for byte; another seed another one', () => {
    const a = runSimulation({ seed: 42, timeMs: 3000, nemesis: ALL });
    const b = runSimulation({ seed: 42, timeMs: 3000, nemesis: ALL });
    const c = runSimulation({ seed: 43, timeMs: 3000, nemesis: ALL });
    expect(a.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(b.hash).toBe(a.hash);
    expect(JSON.stringify(b.history)).toBe(JSON.stringify(a.history));
    expect(b.events).toBe(a.events);
    expect(b.finalNodes).toEqual(a.finalNodes);
    expect(c.hash).not.toBe(a.hash);
    // The history holds client operations and nemesis actions.
    expect(a.history.some((e) => e.process === 'nemesis')).toBe(true);
    expect(a.ops.invoked).toBeGreaterThan(50);
  });

  it('client choices do not perturb the nodes: more clients, same election', () => {
    // Randomness is forked per purpose: the first leader is elected before any client acts.
    const leaderOf = (clients: number): string | undefined => {
      let first: string | undefined;
      runSimulation({
        seed: 5,
        timeMs: 300,
        nemesis: [],
        workload: { clients },
        onCluster: (c) => {
          c.runUntil(() => c.leader() !== undefined, 1000);
          first = c.leader();
        },
      });
      return first;
    };
    expect(leaderOf(1)).toBe(leaderOf(20));
  });

  it('the history is well formed for the checker: pairs, one operation per process, no reuse after info', () => {
    const r = runSimulation({ seed: 9, timeMs: 4000, nemesis: ALL });
    const clientEvents = r.history.filter((e) => typeof e.process === 'number');
    const paired = pairHistory(clientEvents);
    expect(paired.counts.info).toBeGreaterThan(0);
    expect(paired.counts.pending).toBe(0);
    expect(r.check.verdict).toBe('valid');
    // Virtual time only goes forward.
    for (let i = 1; i < r.history.length; i++) {
      expect(r.history[i]!.time).toBeGreaterThanOrEqual(r.history[i - 1]!.time);
    }
  });

  it('a sweep of 10 seeds with every nemesis: valid, safe, live; snapshots are taken and installed', () => {
    const results: RunResult[] = [];
    for (let seed = 1; seed <= 10; seed++) {
      results.push(runSimulation({ seed, timeMs: 5000, nemesis: ALL }));
    }
    for (const r of results) {
      expect({
        seed: r.seed,
        verdict: r.check.verdict,
        violations: r.violations,
        live: r.liveness.ok,
      }).toEqual({
        seed: r.seed,
        verdict: 'valid',
        violations: [],
        live: true,
      });
    }
    const sum = (f: (r: RunResult) => number) => results.reduce((s, r) => s + f(r), 0);
    expect(sum((r) => r.snapshots.taken)).toBeGreaterThan(0);
    expect(sum((r) => r.snapshots.installed)).toBeGreaterThan(0);
    expect(sum((r) => r.faultsApplied)).toBeGreaterThan(100);
    expect(sum((r) => r.network.dropped.partition)).toBeGreaterThan(0);
    expect(sum((r) => r.network.dropped.down)).toBeGreaterThan(0);
    expect(sum((r) => r.ops.info)).toBeGreaterThan(0);
    const kinds = new Set(
      results.flatMap((r) => r.history.filter((e) => e.process === 'nemesis').map((e) => e.f)),
    );
    expect(kinds).toEqual(
      new Set(['partition', 'heal', 'crash', 'restart', 'pause', 'resume', 'drift']),
    );
  });

  it('a user schedule runs as given; whatever it leaves broken is healed before the liveness check', () => {
    const r = runSimulation({
      seed: 3,
      timeMs: 3000,
      schedule: [
        { at: 500, kind: 'partition', mode: 'isolate-leader' },
        { at: 1500, kind: 'crash', target: ['n1', 'n2'] },
        { at: 2000, kind: 'pause', target: 'one' },
      ],
    });
    const nemesis = r.history.filter((e) => e.process === 'nemesis').map((e) => [e.f, e.time]);
    expect(nemesis.slice(0, 4)).toEqual([
      ['partition', 500],
      ['crash', 1500],
      ['crash', 1500],
      ['pause', 2000],
    ]);
    // At 3000 ms: heal, resume, restarts.
    expect(nemesis.slice(4).every(([, t]) => t === 3000)).toBe(true);
    expect(new Set(nemesis.slice(4).map(([f]) => f))).toEqual(
      new Set(['heal', 'resume', 'restart']),
    );
    expect(r.liveness.ok).toBe(true);
    expect(r.check.verdict).toBe('valid');
    expect(r.nemesis).toBe('file');
  });
});
