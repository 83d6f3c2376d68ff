// The reconciler's decisions, one situation per test: desired vs observed vs closures vs reported.

import { describe, expect, it } from 'vitest';
import { specHash, type VmSpec, validateVmSpec } from '../state/vm_spec.ts';
import type { ObservedVm } from '../vmm/supervisor.ts';
import {
  type DesiredVm,
  FETCH_RETRY_MS,
  type ReconcileInput,
  reconcile,
  stopTimeoutMs,
} from './reconciler.ts';

const RUNNER = '/nix/store/0c6lw3rq0qvd4n4ys4fvnnbd5bxxc0nk-microvm-run-db';

function spec(name: string, extra: Record<string, unknown> = {}): VmSpec {
  const r = validateVmSpec({ version: 1, name, kernel: '/k', ...extra });
  if (!r.ok) throw new Error(r.errors[0]!.message);
  return r.spec;
}
function runnerSpec(name: string): VmSpec {
  const r = validateVmSpec({ version: 1, name, runner: RUNNER });
  if (!r.ok) throw new Error(r.errors[0]!.message);
  return r.spec;
}
function desired(s: VmSpec, generation = 1, state: DesiredVm['state'] = 'running'): DesiredVm {
  return { name: s.name, spec: s, generation, state };
}
function observed(
  s: VmSpec,
  phase: ObservedVm['phase'],
  extra: Partial<ObservedVm> = {},
): ObservedVm {
  return {
    name: s.name,
    backend: 'qemu',
    specHash: specHash(s),
    generation: 1,
    phase,
    sinceMs: 0,
    attempts: 0,
    adopted: false,
    ...extra,
  };
}
function input(p: Partial<ReconcileInput>): ReconcileInput {
  return { desired: [], observed: [], closures: {}, busy: new Set(), reported: {}, ...p };
}

describe('reconcile', () => {
  it('starts a desired kernel VM that does not run, and reports starting', () => {
    const s = spec('a');
    expect(reconcile(input({ desired: [desired(s, 4)] }), 0)).toEqual([
      { kind: 'start', name: 'a', spec: s, generation: 4 },
      { kind: 'report', name: 'a', state: 'starting' },
    ]);
  });

  it('fetches a missing runner closure first, reports fetching, and starts once it is present', () => {
    const s = runnerSpec('db');
    expect(reconcile(input({ desired: [desired(s)] }), 0)).toEqual([
      { kind: 'fetch', name: 'db', storePath: RUNNER },
      { kind: 'report', name: 'db', state: 'fetching', reason: RUNNER },
    ]);
    const fetching = input({
      desired: [desired(s)],
      closures: { [RUNNER]: { present: false, fetching: true } },
      reported: { db: { state: 'fetching', reason: RUNNER } },
    });
    expect(reconcile(fetching, 0)).toEqual([]);
    const present = input({
      desired: [desired(s)],
      closures: { [RUNNER]: { present: true, fetching: false } },
    });
    expect(reconcile(present, 0)[0]).toEqual({ kind: 'start', name: 'db', spec: s, generation: 1 });
  });

  it('reports a failed fetch, and fetches again only after FETCH_RETRY_MS', () => {
    const s = runnerSpec('db');
    const failed = input({
      desired: [desired(s)],
      closures: {
        [RUNNER]: {
          present: false,
          fetching: false,
          failed: { reason: 'no peer has it', atMs: 1000 },
        },
      },
    });
    expect(reconcile(failed, 1000 + FETCH_RETRY_MS - 1)).toEqual([
      {
        kind: 'report',
        name: 'db',
        state: 'failed',
        reason: `fetching ${RUNNER} failed: no peer has it (retrying)`,
      },
    ]);
    expect(reconcile(failed, 1000 + FETCH_RETRY_MS)[0]).toEqual({
      kind: 'fetch',
      name: 'db',
      storePath: RUNNER,
    });
  });

  it('reports running once, then nothing while nothing changes', () => {
    const s = spec('a');
    const i = input({ desired: [desired(s)], observed: [observed(s, 'running')] });
    expect(reconcile(i, 0)).toEqual([{ kind: 'report', name: 'a', state: 'running' }]);
    expect(reconcile({ ...i, reported: { a: { state: 'running' } } }, 0)).toEqual([]);
  });

  it('reports a restart backoff as starting with the supervisor reason', () => {
    const s = spec('a');
    const i = input({
      desired: [desired(s)],
      observed: [
        observed(s, 'backoff', { reason: 'restart 2 in 400 ms after: VMM killed by SIGKILL' }),
      ],
    });
    expect(reconcile(i, 0)).toEqual([
      {
        kind: 'report',
        name: 'a',
        state: 'starting',
        reason: 'restart 2 in 400 ms after: VMM killed by SIGKILL',
      },
    ]);
  });

  it('stops a VM whose spec changed, and starts the new spec once it ended', () => {
    const old = spec('a', { memoryMiB: 128 });
    const now = spec('a', { memoryMiB: 256 });
    expect(
      reconcile(input({ desired: [desired(now, 2)], observed: [observed(old, 'running')] }), 0),
    ).toEqual([
      { kind: 'stop', name: 'a', why: 'spec-changed' },
      {
        kind: 'report',
        name: 'a',
        state: 'stopping',
        reason: 'the spec changed; restarting with the new one',
      },
    ]);
    const ended = observed(old, 'exited', {
      lastExit: { kind: 'stopped', detail: 'stopped by the node' },
    });
    expect(reconcile(input({ desired: [desired(now, 2)], observed: [ended] }), 0)[0]).toEqual({
      kind: 'start',
      name: 'a',
      spec: now,
      generation: 2,
    });
  });

  it('leaves a failed VM failed until it is resubmitted with a newer generation', () => {
    const s = spec('a');
    const failed = observed(s, 'failed', {
      generation: 3,
      reason: 'gave up after 2 restarts; last: VMM exited with code 1',
    });
    expect(reconcile(input({ desired: [desired(s, 3)], observed: [failed] }), 0)).toEqual([
      {
        kind: 'report',
        name: 'a',
        state: 'failed',
        reason: 'gave up after 2 restarts; last: VMM exited with code 1',
      },
    ]);
    expect(reconcile(input({ desired: [desired(s, 4)], observed: [failed] }), 0)[0]).toEqual({
      kind: 'start',
      name: 'a',
      spec: s,
      generation: 4,
    });
  });

  it('starts again a VM this node stopped (fenced, or moved away and back) that is desired running at the same generation', () => {
    // The simulator's finding: a node fenced by a partition shorter than node-down-after stopped
    // its VMs; unfenced, the table still placed them here at the same generation, and the
    // reconciler took the stop for a final end, so they stayed stopped for good.
    const s = spec('a');
    for (const lastExit of [
      { kind: 'stopped', code: 0, detail: 'stopped by the node' } as const,
      {
        kind: 'killed',
        signal: 'SIGKILL',
        detail: 'killed by the node (SIGKILL) after the stop timeout',
      } as const,
    ]) {
      const fenced = observed(s, 'exited', { generation: 3, lastExit });
      expect(reconcile(input({ desired: [desired(s, 3)], observed: [fenced] }), 0)).toEqual([
        { kind: 'start', name: 'a', spec: s, generation: 3 },
        { kind: 'report', name: 'a', state: 'starting' },
      ]);
    }
  });

  it('reports a guest power-off as stopped, not failed', () => {
    const s = spec('a');
    const off = observed(s, 'exited', {
      lastExit: { kind: 'guest-poweroff', code: 0, detail: 'the guest powered off' },
    });
    expect(reconcile(input({ desired: [desired(s)], observed: [off] }), 0)).toEqual([
      { kind: 'report', name: 'a', state: 'stopped', reason: 'the guest powered off' },
    ]);
  });

  it('stops a VM desired stopped, and reports stopped once it ended', () => {
    const s = spec('a');
    expect(
      reconcile(
        input({ desired: [desired(s, 1, 'stopped')], observed: [observed(s, 'running')] }),
        0,
      ),
    ).toEqual([
      { kind: 'stop', name: 'a', why: 'desired-stopped' },
      { kind: 'report', name: 'a', state: 'stopping' },
    ]);
    expect(reconcile(input({ desired: [desired(s, 1, 'stopped')] }), 0)).toEqual([
      { kind: 'report', name: 'a', state: 'stopped' },
    ]);
  });

  it('stops, then removes, a VM no longer desired here, and reports nothing for it', () => {
    const s = spec('gone');
    expect(reconcile(input({ observed: [observed(s, 'running')] }), 0)).toEqual([
      { kind: 'stop', name: 'gone', why: 'not-desired' },
    ]);
    expect(reconcile(input({ observed: [observed(s, 'stopping')] }), 0)).toEqual([]);
    expect(reconcile(input({ observed: [observed(s, 'exited')] }), 0)).toEqual([
      { kind: 'remove', name: 'gone' },
    ]);
  });

  it('takes no action for a VM whose previous action still executes', () => {
    const s = spec('a');
    expect(
      reconcile(
        input({
          desired: [desired(s)],
          busy: new Set(['a']),
          reported: { a: { state: 'starting' } },
        }),
        0,
      ),
    ).toEqual([]);
    expect(
      reconcile(input({ observed: [observed(s, 'exited')], busy: new Set(['a']) }), 0),
    ).toEqual([]);
  });
});

describe('stopTimeoutMs: grace only when no other copy can be starting', () => {
  const budgets = { fastMs: 3000, gracefulMs: 30_000 };
  it('a copy moved away (its row still wants it running, elsewhere) is killed after the short budget', () => {
    expect(stopTimeoutMs('not-desired', { ...budgets, fenced: false, wantedElsewhere: true })).toBe(
      3000,
    );
  });
  it('a VM deleted, stopped or changed by the user gets the full grace', () => {
    const o = { ...budgets, fenced: false, wantedElsewhere: false };
    expect(stopTimeoutMs('not-desired', o)).toBe(30_000);
    expect(stopTimeoutMs('desired-stopped', o)).toBe(30_000);
    expect(stopTimeoutMs('remove', o)).toBe(30_000);
    // A spec change restarts it here: its row wants it running, but on this node.
    expect(stopTimeoutMs('spec-changed', { ...o, wantedElsewhere: true })).toBe(30_000);
  });
  it('a fenced node stops everything with the short budget', () => {
    for (const why of ['not-desired', 'desired-stopped', 'spec-changed', 'remove'] as const) {
      expect(stopTimeoutMs(why, { ...budgets, fenced: true, wantedElsewhere: false })).toBe(3000);
    }
  });
});
