// The deployment table through the state machine (docs/deploy.md, "Replicated state"): every
// command and its refusals, the bounds at their edges, the rows it writes through the VM table,
// the snapshot round trip and determinism. Pure: the state machine, the placement loop's
// evaluation and the rollout step function, driven by hand (the leader's duty is tested beside it).

import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { Cluster, FAST, SPEC } from '../../test/deploy/table.ts';
import { rolloutStep } from '../sched/rollout.ts';
import {
  DEPLOY_DEADLINE_MS_MAX,
  DEPLOY_PARALLEL_MAX,
  DEPLOY_SOURCE_BYTES_MAX,
  DEPLOY_STEP_NAMES_MAX,
  DEPLOY_VERSIONS_KEPT,
  DEPLOYMENTS_MAX,
  deployCommandProblem,
  validateUpdatePolicy,
} from './deployments.ts';
import { type Command, type Result, StateMachine } from './machine.ts';

const err = (r: Result): string => (r.ok ? 'ok' : `${r.code}: ${r.message}`);

describe('deploy.submit', () => {
  it('the first version writes the group rows (unplaced, generation = its index) and its rollout succeeds once they are healthy', () => {
    const c = Cluster.of(3);
    const r = c.submit();
    expect(r.ok && r.version).toBe(1);
    expect(r.ok && r.noop).toBe(false);
    const rows = c.sm.vms.groupInstances('web');
    expect(rows.map((v) => [v.name, v.node, v.generation, v.version])).toEqual([
      ['web-0', '', c.index, 1],
      ['web-1', '', c.index, 1],
      ['web-2', '', c.index, 1],
    ]);
    const d = c.dep();
    expect(d.versions[0]).toMatchObject({ n: 1, index: c.index, source: { atMs: 1000 } });
    expect(d.versions[0]!.update).toEqual({ ...FAST, autoRevert: false, canary: 0 });
    expect(d.rollout).toEqual({
      to: 1,
      state: 'running',
      startedAtMs: 1000,
      progressAtMs: 1000,
      promoted: false,
    });
    c.settle();
    expect(c.dep().rollout!.state).toBe('succeeded');
    expect(c.dep().knownGood).toBe(1);
    expect(c.dep().good).toEqual([1]);
  });

  it('an identical re-submission is a no-op; a changed spec or policy is a new version with a rollout from the current one', () => {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    const before = c.sm.snapshot();
    const again = c.submit();
    expect(again.ok && again.noop).toBe(true);
    expect(again.ok && again.version).toBe(1);
    // Nothing changed but the applied index.
    expect(c.dep().versions).toHaveLength(1);
    expect(c.sm.snapshot().byteLength).toBe(before.byteLength);
    const v2 = c.submit({ memoryMiB: 512 });
    expect(v2.ok && v2.version).toBe(2);
    expect(c.dep().rollout).toMatchObject({ from: 1, to: 2, state: 'running' });
    // Rows are untouched until the rollout replaces them.
    expect(c.versionsOfRows()).toEqual({ 'web-0': 1, 'web-1': 1, 'web-2': 1 });
    const v3 = c.submit({ memoryMiB: 512 }, { ...FAST, maxParallel: 2 });
    expect(v3.ok && v3.version).toBe(3);
    // A new version replaces the running rollout: it starts from what the previous one targeted.
    expect(c.dep().rollout).toMatchObject({ from: 2, to: 3 });
    // The count is part of a version too (specHash alone leaves placement out).
    const v4 = c.submit({ memoryMiB: 512, count: 2 }, { ...FAST, maxParallel: 2 });
    expect(v4.ok && v4.version).toBe(4);
  });

  it('refuses bad input with a clear message, changing nothing', () => {
    const c = Cluster.of(1);
    const cases: [Command, RegExp][] = [
      [
        { op: 'deploy.submit', name: 'web', spec: SPEC({ vcpus: 0 }), source: {}, atMs: 1 },
        /vcpus/,
      ],
      [
        { op: 'deploy.submit', name: 'web', spec: SPEC({ name: 'db' }), source: {}, atMs: 1 },
        /differs from the deployment's name/,
      ],
      [{ op: 'deploy.submit', name: 'Web!', spec: SPEC(), source: {}, atMs: 1 }, /VM name/],
      [
        {
          op: 'deploy.submit',
          name: 'web',
          spec: SPEC(),
          update: { maxParallel: 0 },
          source: {},
          atMs: 1,
        },
        /maxParallel/,
      ],
      [
        {
          op: 'deploy.submit',
          name: 'web',
          spec: SPEC(),
          update: { fast: true },
          source: {},
          atMs: 1,
        },
        /update.fast: unknown field/,
      ],
      [
        { op: 'deploy.submit', name: 'web', spec: SPEC(), source: { branch: 'main' }, atMs: 1 },
        /source.branch: unknown field/,
      ],
      [
        { op: 'deploy.submit', name: 'web', spec: SPEC(), source: { rev: 7 }, atMs: 1 },
        /DEPLOY_SOURCE_BYTES_MAX/,
      ],
    ] as unknown as [Command, RegExp][];
    for (const [cmd, why] of cases) {
      const r = c.apply(cmd);
      expect(err(r)).toMatch(why);
    }
    expect(c.sm.deployments.list()).toEqual([]);
    expect(c.sm.vms.list()).toEqual([]);
  });

  it('bounds at their edges: source bytes, maxParallel, canary, the deadlines, names per step', () => {
    const c = Cluster.of(1);
    const long = 'a'.repeat(DEPLOY_SOURCE_BYTES_MAX);
    const ok = c.apply({
      op: 'deploy.submit',
      name: 'web',
      spec: SPEC(),
      source: { rev: long },
      atMs: 1,
    });
    expect(err(ok)).toBe('ok');
    const over = c.apply({
      op: 'deploy.submit',
      name: 'db',
      spec: SPEC(),
      source: { rev: `${long}a` },
      atMs: 1,
    });
    expect(err(over)).toMatch(/DEPLOY_SOURCE_BYTES_MAX \(1024\)/);
    expect(validateUpdatePolicy({ maxParallel: DEPLOY_PARALLEL_MAX }, 3).ok).toBe(true);
    const wide = validateUpdatePolicy({ maxParallel: DEPLOY_PARALLEL_MAX + 1 }, 3);
    expect(wide.ok ? '' : wide.errors.join()).toMatch(/DEPLOY_PARALLEL_MAX/);
    expect(validateUpdatePolicy({ canary: 3 }, 3).ok).toBe(true);
    expect(validateUpdatePolicy({ canary: 4 }, 3).ok).toBe(false);
    expect(validateUpdatePolicy({ minHealthyMs: 5, healthyDeadlineMs: 5 }, 1).ok).toBe(false);
    expect(validateUpdatePolicy({ minHealthyMs: 5, healthyDeadlineMs: 6 }, 1).ok).toBe(true);
    expect(
      validateUpdatePolicy({ healthyDeadlineMs: 700_000, progressDeadlineMs: 699_999 }, 1).ok,
    ).toBe(false);
    expect(
      validateUpdatePolicy({ healthyDeadlineMs: 700_000, progressDeadlineMs: 700_000 }, 1).ok,
    ).toBe(true);
    const edge = {
      minHealthyMs: DEPLOY_DEADLINE_MS_MAX - 1,
      healthyDeadlineMs: DEPLOY_DEADLINE_MS_MAX,
      progressDeadlineMs: DEPLOY_DEADLINE_MS_MAX,
    };
    expect(validateUpdatePolicy(edge, 1).ok).toBe(true);
    const late = validateUpdatePolicy(
      { ...edge, progressDeadlineMs: DEPLOY_DEADLINE_MS_MAX + 1 },
      1,
    );
    expect(late.ok ? '' : late.errors.join()).toMatch(/DEPLOY_DEADLINE_MS_MAX/);
    const names = (n: number) => Array.from({ length: n }, (_, k) => `web-${k}`);
    const step = (replace: string[]) =>
      deployCommandProblem({
        op: 'deploy.step',
        name: 'web',
        to: 2,
        viewIndex: 1,
        replace,
        remove: [],
        atMs: 1,
      });
    expect(step(names(DEPLOY_STEP_NAMES_MAX))).toBeUndefined();
    expect(step(names(DEPLOY_STEP_NAMES_MAX + 1))).toMatch(/DEPLOY_STEP_NAMES_MAX \(200\)/);
    expect(step(['web-0', 'web-0'])).toMatch(/distinct/);
    const d = validateUpdatePolicy(undefined, 1);
    expect(d.ok && d.policy).toEqual({
      maxParallel: 1,
      minHealthyMs: 10_000,
      healthyDeadlineMs: 300_000,
      progressDeadlineMs: 600_000,
      autoRevert: false,
      canary: 0,
    });
  });

  it(`holds at most DEPLOYMENTS_MAX (${DEPLOYMENTS_MAX}) deployments`, () => {
    const c = Cluster.of(1);
    for (let i = 0; i < DEPLOYMENTS_MAX; i++) {
      const r = c.apply({
        op: 'deploy.submit',
        name: `d${i}`,
        spec: SPEC({ count: 1 }),
        source: {},
        atMs: 1,
      });
      expect(r.ok).toBe(true);
    }
    const r = c.apply({
      op: 'deploy.submit',
      name: 'one-more',
      spec: SPEC({ count: 1 }),
      source: {},
      atMs: 1,
    });
    expect(err(r)).toMatch(/DEPLOYMENTS_MAX \(1000\)/);
    expect(c.sm.vms.get('one-more')).toBeUndefined();
  });

  it(`keeps the newest DEPLOY_VERSIONS_KEPT (${DEPLOY_VERSIONS_KEPT}) versions and the known-good one beyond them`, () => {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    for (let m = 1; m <= DEPLOY_VERSIONS_KEPT + 5; m++) c.submit({ memoryMiB: 256 + m });
    const d = c.dep();
    expect(d.versions).toHaveLength(DEPLOY_VERSIONS_KEPT);
    expect(d.versions[0]!.n).toBe(1); // known-good, kept
    expect(d.versions[1]!.n).toBe(26 - DEPLOY_VERSIONS_KEPT + 2);
    expect(d.versions.at(-1)!.n).toBe(26);
    expect(d.knownGood).toBe(1);
  });

  it('a deployment owns its group: vm.put, vm.stop, vm.rm on it or its instances point at pcr deploy; an existing group is not taken over', () => {
    const c = Cluster.of(1);
    c.submit();
    const put = c.apply({ op: 'vm.put', spec: { ...SPEC(), name: 'web' }, atMs: 1 });
    expect(err(put)).toMatch(/deployment web.*pcr deploy/);
    expect(err(c.apply({ op: 'vm.stop', name: 'web', atMs: 1 }))).toMatch(/pcr deploy/);
    expect(err(c.apply({ op: 'vm.stop', name: 'web-1', atMs: 1 }))).toMatch(/pcr deploy/);
    expect(err(c.apply({ op: 'vm.rm', name: 'web-2' }))).toMatch(/pcr deploy/);
    expect(c.sm.vms.groupInstances('web')).toHaveLength(3);
    expect(c.sm.vms.groupInstances('web').every((v) => v.desired === 'running')).toBe(true);
    c.apply({ op: 'vm.put', spec: { ...SPEC({ count: 1 }), name: 'db' }, atMs: 1 });
    expect(err(c.submit({}, FAST, 'db'))).toMatch(/exists outside deployments.*pcr vm rm db/);
  });
});

describe('deploy.step and deploy.finish: a rolling update', () => {
  it('replaces maxParallel at a time, each behind minHealthyMs, then finishes; rows carry the version and its generation', () => {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    c.submit({ memoryMiB: 512 });
    const v2 = c.dep().versions[1]!;
    const seen: number[] = [];
    for (let i = 0; i < 200 && c.dep().rollout!.state === 'running'; i++) {
      c.place();
      c.run();
      c.drive();
      const atV2 = c.sm.vms.groupInstances('web').filter((v) => v.generation === v2.index);
      seen.push(atV2.filter((v) => v.state !== 'running').length);
      c.now += 300;
    }
    expect(c.dep().rollout!.state).toBe('succeeded');
    expect(c.dep().knownGood).toBe(2);
    expect(Math.max(...seen)).toBe(1);
    const rows = c.sm.vms.groupInstances('web');
    expect(rows.every((v) => v.generation === v2.index && v.version === 2)).toBe(true);
    expect(rows.every((v) => v.spec.memoryMiB === 512)).toBe(true);
  });

  it('a smaller count removes the extra rows once every instance of the target is healthy', () => {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    c.submit({ count: 2, memoryMiB: 300 });
    c.settle();
    expect(c.dep().rollout!.state).toBe('succeeded');
    expect(Object.keys(c.versionsOfRows())).toEqual(['web-0', 'web-1']);
  });

  it('refuses a stale step: another target, an instance already at it, beyond maxParallel, an early or unknown removal', () => {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    c.submit({ memoryMiB: 512 });
    const step = (o: Partial<Record<string, unknown>>) =>
      c.apply({
        op: 'deploy.step',
        name: 'web',
        to: 2,
        viewIndex: 0,
        replace: [],
        remove: [],
        atMs: c.now,
        ...o,
      } as Command);
    expect(err(step({ to: 1, replace: ['web-0'] }))).toMatch(/^stale: .*targets version 2/);
    expect(err(step({ replace: ['web-0', 'web-1'] }))).toMatch(/^stale: .*exceed maxParallel 1/);
    expect(err(step({ replace: ['web-9'] }))).toMatch(/not an instance of version 2/);
    expect(err(step({ remove: ['web-2'] }))).toMatch(/only once every instance/);
    expect(err(step({ replace: [] }))).toMatch(/^invalid: a step replaces or removes/);
    expect(err(step({ replace: ['web-0'] }))).toBe('ok');
    expect(err(step({ replace: ['web-0'] }))).toMatch(/already at version 2/);
    // web-0 is in flight: a second replacement would make two.
    expect(err(step({ replace: ['web-1'] }))).toMatch(/exceed maxParallel/);
    expect(err(step({ name: 'nope', replace: ['web-1'] }))).toMatch(/^notFound/);
    expect(c.versionsOfRows()).toEqual({ 'web-0': 2, 'web-1': 1, 'web-2': 1 });
  });

  it('refuses a finish the step function does not reach at its time', () => {
    const c = Cluster.of(3);
    c.submit();
    const fin = (outcome: string) =>
      c.apply({ op: 'deploy.finish', name: 'web', to: 1, outcome, atMs: c.now } as Command);
    expect(err(fin('succeeded'))).toMatch(/^stale: .*not succeeded/);
    expect(err(fin('failed'))).toMatch(/^stale: .*not failed/);
    expect(err(fin('maybe'))).toMatch(/^invalid: outcome/);
    c.settle();
    expect(err(fin('succeeded'))).toMatch(/^stale: .*is succeeded/);
  });

  it('a failing version with autoRevert: the failure and the revert version are one entry, and the known-good spec runs again', () => {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    c.submit({ memoryMiB: 512 }, { ...FAST, autoRevert: true });
    // Instances of version 2 never start: the first one replaced misses healthyDeadlineMs.
    for (let i = 0; i < 40 && c.dep().rollout!.to === 2; i++) {
      c.place();
      c.run(
        c.sm.vms
          .groupInstances('web')
          .filter((v) => v.version === 2)
          .map((v) => v.name),
      );
      const before = c.index;
      c.drive();
      if (c.dep().rollout!.to !== 2) expect(c.index).toBe(before + 1);
      c.now += 600;
    }
    const d = c.dep();
    expect(d.versions.map((v) => v.n)).toEqual([1, 2, 3]);
    expect(d.versions[2]!.source.revertOf).toBe(2);
    expect(d.versions[2]!.source.flake).toBe('git+file:///src#web');
    expect(d.versions[2]!.specHash).toBe(d.versions[0]!.specHash);
    expect(d.rollout).toMatchObject({ from: 2, to: 3, state: 'running' });
    c.settle();
    expect(c.dep().rollout!.state).toBe('succeeded');
    expect(c.sm.vms.groupInstances('web').every((v) => v.spec.memoryMiB === 256)).toBe(true);
    expect(c.dep().knownGood).toBe(3);
  });

  it('without autoRevert a failure stays failed; re-submitting the same spec is then a new version', () => {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    c.submit({ memoryMiB: 512 });
    c.settle(['web-0']);
    expect(c.dep().rollout).toMatchObject({ to: 2, state: 'failed' });
    expect(c.dep().rollout!.reason).toMatch(/web-0 not healthy within healthyDeadlineMs/);
    expect(c.dep().versions).toHaveLength(2);
    const again = c.submit({ memoryMiB: 512 });
    expect(again.ok && again.noop).toBe(false);
    expect(again.ok && again.version).toBe(3);
  });
});

describe('a replacement with the spec an instance already runs', () => {
  it('keeps its state at the new generation (the agent restarts nothing and reports nothing new)', () => {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    // Version 2 changes only the policy: the same spec, so its rows are updated in place.
    c.submit({}, { ...FAST, maxParallel: 3 });
    const v2 = c.dep().versions[1]!;
    c.drive();
    const rows = c.sm.vms.groupInstances('web');
    expect(rows.map((v) => [v.generation, v.version, v.state])).toEqual([
      [v2.index, 2, 'running'],
      [v2.index, 2, 'running'],
      [v2.index, 2, 'running'],
    ]);
    expect(rows[0]!.events.at(-1)).toMatchObject({ generation: v2.index, state: 'running' });
    // Healthy minHealthyMs after the update, without any report.
    c.now += 1000;
    expect(err(c.drive()!)).toBe('ok');
    expect(c.dep().rollout).toMatchObject({ to: 2, state: 'succeeded' });
  });
});

describe('deploy.promote and deploy.rollback', () => {
  it('a canary rollout pauses at its canaries until promoted', () => {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    expect(err(c.apply({ op: 'deploy.promote', name: 'web', atMs: 1 }))).toMatch(
      /no canary rollout waiting/,
    );
    c.submit({ memoryMiB: 512 }, { ...FAST, canary: 1 });
    c.settle();
    expect(c.dep().rollout!.state).toBe('paused');
    expect(c.versionsOfRows()).toEqual({ 'web-0': 2, 'web-1': 1, 'web-2': 1 });
    // Long after: a paused canary does not fail on the progress deadline.
    c.place();
    c.run();
    c.now += 60_000;
    expect(rolloutStep(c.dep(), c.sm.vms.groupInstances('web'), c.now)).toEqual({ kind: 'wait' });
    const p = c.apply({ op: 'deploy.promote', name: 'web', atMs: c.now });
    expect(p.ok && p.deployment?.rollout).toMatchObject({ state: 'running', promoted: true });
    expect(err(c.apply({ op: 'deploy.promote', name: 'web', atMs: 1 }))).toMatch(/no canary/);
    c.settle();
    expect(c.dep().rollout!.state).toBe('succeeded');
  });

  it('rolls back to the newest known-good version by default, or a named one; refuses one never known-good or no longer kept', () => {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    c.submit({ memoryMiB: 512 });
    c.settle();
    c.submit({ memoryMiB: 600 });
    c.settle(['web-0']);
    expect(c.dep().good).toEqual([1, 2]);
    expect(err(c.apply({ op: 'deploy.rollback', name: 'web', to: 3, atMs: 1 }))).toMatch(
      /never was known-good/,
    );
    expect(err(c.apply({ op: 'deploy.rollback', name: 'web', to: 9, atMs: 1 }))).toMatch(
      /no longer kept/,
    );
    expect(err(c.apply({ op: 'deploy.rollback', name: 'nope', atMs: 1 }))).toMatch(/^notFound/);
    const r = c.apply({ op: 'deploy.rollback', name: 'web', atMs: c.now });
    expect(r.ok && r.version).toBe(4);
    expect(c.dep().versions.at(-1)).toMatchObject({ n: 4, source: { revertOf: 3 } });
    expect(c.dep().versions.at(-1)!.spec.memoryMiB).toBe(512);
    c.settle();
    expect(c.dep().rollout).toMatchObject({ to: 4, state: 'succeeded' });
    const named = c.apply({ op: 'deploy.rollback', name: 'web', to: 1, atMs: c.now });
    expect(named.ok && named.version).toBe(5);
    expect(c.dep().versions.at(-1)!.spec.memoryMiB).toBe(256);
  });
});

describe('deploy.stop and deploy.rm', () => {
  it('stop: every instance desired stopped, the rollout ended (the duty waits); a re-submission of the same spec starts it again as a new version', () => {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    const r = c.apply({ op: 'deploy.stop', name: 'web', atMs: c.now });
    expect(err(r)).toBe('ok');
    expect(c.dep().rollout).toMatchObject({ to: 1, state: 'stopped' });
    expect(c.sm.vms.groupInstances('web').map((v) => v.desired)).toEqual([
      'stopped',
      'stopped',
      'stopped',
    ]);
    expect(rolloutStep(c.dep(), c.sm.vms.groupInstances('web'), c.now + 60_000)).toEqual({
      kind: 'wait',
    });
    // The agents stop them.
    for (const v of c.sm.vms.groupInstances('web'))
      c.apply({
        op: 'vm.report',
        name: v.name,
        node: v.node,
        generation: v.generation,
        state: 'stopped',
        atMs: c.now,
      });
    // Stopping again changes nothing; the versions are kept.
    expect(err(c.apply({ op: 'deploy.stop', name: 'web', atMs: c.now }))).toBe('ok');
    expect(c.dep().versions.map((v) => v.n)).toEqual([1]);
    const again = c.submit();
    expect(again.ok && again.noop).toBe(false);
    expect(again.ok && again.version).toBe(2);
    c.settle();
    expect(c.dep().rollout).toMatchObject({ to: 2, state: 'succeeded' });
    expect(c.sm.vms.groupInstances('web').map((v) => [v.version, v.desired, v.state])).toEqual([
      [2, 'running', 'running'],
      [2, 'running', 'running'],
      [2, 'running', 'running'],
    ]);
  });

  it('stop in the middle of a rollout ends it: no step is made after it', () => {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    c.submit({ memoryMiB: 512 });
    c.place();
    expect(err(c.drive()!)).toBe('ok');
    expect(c.apply({ op: 'deploy.stop', name: 'web', atMs: c.now }).ok).toBe(true);
    c.now += 60_000;
    expect(c.drive()).toBeUndefined();
    expect(c.dep().rollout).toMatchObject({ to: 2, state: 'stopped' });
  });

  it('rm: the deployment, its versions and its rows are gone, and the name is free again', () => {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    expect(err(c.apply({ op: 'deploy.rm', name: 'web', atMs: c.now }))).toBe('ok');
    expect(c.sm.vms.groupInstances('web')).toEqual([]);
    expect(err(c.sm.query({ op: 'deploy.get', name: 'web' }))).toMatch(/^notFound/);
    expect(err(c.apply({ op: 'deploy.rm', name: 'web', atMs: c.now }))).toMatch(/^notFound/);
    expect(err(c.apply({ op: 'deploy.stop', name: 'web', atMs: c.now }))).toMatch(/^notFound/);
    // A VM group of that name may be run again (no deployment owns it now), or deployed anew.
    expect(err(c.apply({ op: 'vm.put', spec: { ...SPEC(), name: 'web' }, atMs: c.now }))).toBe(
      'ok',
    );
    expect(err(c.apply({ op: 'vm.rm', name: 'web' }))).toBe('ok');
    const fresh = c.submit();
    expect(fresh.ok && fresh.version).toBe(1);
  });

  it('refuses a bad name at once', () => {
    expect(deployCommandProblem({ op: 'deploy.stop', name: 'Web!', atMs: 1 })).toMatch(/VM name/);
    expect(deployCommandProblem({ op: 'deploy.rm', name: 'web' })).toMatch(/atMs/);
  });
});

describe('queries, snapshots, determinism', () => {
  function scripted(): Cluster {
    const c = Cluster.of(3);
    c.submit();
    c.settle();
    c.submit({ memoryMiB: 512 }, { ...FAST, canary: 1, autoRevert: true });
    c.settle();
    c.submit({}, FAST, 'db');
    c.apply({ op: 'deploy.stop', name: 'db', atMs: c.now });
    return c;
  }

  it('deploy.get and deploy.list answer the table', () => {
    const c = scripted();
    const one = c.sm.query({ op: 'deploy.get', name: 'web' });
    expect(one.ok && one.deployment?.name).toBe('web');
    const all = c.sm.query({ op: 'deploy.list' });
    expect(all.ok && all.deployments?.map((d) => d.name)).toEqual(['db', 'web']);
    expect(err(c.sm.query({ op: 'deploy.get', name: 'nope' }))).toMatch(/^notFound/);
    expect(err(c.sm.query({ op: 'deploy.get', name: 7 }))).toMatch(/^invalid/);
  });

  it('a snapshot carries the table (version 7): restored, it encodes to the same bytes; a version 6 image still reads', () => {
    const c = scripted();
    const image = c.sm.snapshot();
    const back = new StateMachine();
    back.restore(image);
    expect(back.deployments.list()).toEqual(c.sm.deployments.list());
    expect(Buffer.from(back.snapshot()).equals(Buffer.from(image))).toBe(true);
    const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
    const raw = packr.unpack(image) as unknown[];
    expect(raw[0]).toBe(7);
    const v6 = new StateMachine();
    v6.restore(packr.pack([6, ...raw.slice(1, 9)]));
    expect(v6.deployments.list()).toEqual([]);
    expect(v6.vms.list()).toEqual(c.sm.vms.list());
    // A malformed deployment row is refused and nothing changes.
    const bad = packr.pack([...raw.slice(0, 9), [{ name: 'web', versions: [] }]]);
    expect(() => back.restore(bad)).toThrow(/deployment row/);
    expect(back.deployments.list()).toEqual(c.sm.deployments.list());
  });

  it('two state machines fed the same entries hold the same deployments, byte for byte', () => {
    const a = scripted();
    const b = scripted();
    expect(Buffer.from(a.sm.snapshot()).equals(Buffer.from(b.sm.snapshot()))).toBe(true);
  });
});
