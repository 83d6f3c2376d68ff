// The replicated VM table: specs validated at apply, generations, reports for the current
// generation only, bounded events, and snapshot round trips (with version 2 images still read).

import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { StateMachine } from './machine.ts';
import { VM_EVENTS_MAX, VM_REASON_BYTES_MAX, type VmEntry } from './vms.ts';

const RUNNER = '/nix/store/0c6lw3rq0qvd4n4ys4fvnnbd5bxxc0nk-microvm-run-db';

function withMember(): StateMachine {
  const sm = new StateMachine();
  sm.apply(1, { op: 'member.put', member: { id: 'n1', addrs: [], role: 'voter' } });
  return sm;
}

describe('VM table', () => {
  it('vm.put validates the spec, needs a member, and takes the entry index as generation', () => {
    const sm = withMember();
    const bad = sm.apply(2, {
      op: 'vm.put',
      node: 'n1',
      atMs: 5,
      spec: { version: 1, name: 'db', runner: RUNNER, memoryMiB: 1 << 30, colour: 'red' },
    });
    expect(bad).toMatchObject({ ok: false, code: 'invalid' });
    expect(bad.ok === false && bad.message).toMatch(/memoryMiB: .*above the maximum/);
    expect(bad.ok === false && bad.message).toMatch(/colour/);
    expect(
      sm.apply(3, {
        op: 'vm.put',
        node: 'nx',
        atMs: 5,
        spec: { version: 1, name: 'db', runner: RUNNER },
      }),
    ).toMatchObject({ ok: false, code: 'notFound' });
    const ok = sm.apply(4, {
      op: 'vm.put',
      node: 'n1',
      atMs: 7,
      spec: { version: 1, name: 'db', runner: RUNNER },
    });
    expect(ok).toMatchObject({
      ok: true,
      vm: { name: 'db', node: 'n1', generation: 4, desired: 'running', state: 'pending' },
    });
    // Normalized: defaults filled in.
    expect(sm.query({ op: 'vm.get', name: 'db' })).toMatchObject({
      ok: true,
      vm: { spec: { memoryMiB: 256, restart: { policy: 'never' } } },
    });
  });

  it('accepts reports for the current generation and node only, and bounds the events', () => {
    const sm = withMember();
    sm.apply(2, {
      op: 'vm.put',
      node: 'n1',
      atMs: 1,
      spec: { version: 1, name: 'db', runner: RUNNER },
    });
    const report = (index: number, state: string, generation = 2, node = 'n1') =>
      sm.apply(index, { op: 'vm.report', name: 'db', node, generation, state, atMs: index });
    expect(report(3, 'starting')).toMatchObject({ ok: true, vm: { state: 'starting' } });
    expect(report(4, 'running', 1)).toMatchObject({ ok: false, code: 'stale' });
    expect(report(5, 'running', 2, 'n2')).toMatchObject({ ok: false, code: 'stale' });
    expect(report(6, 'bogus')).toMatchObject({ ok: false, code: 'invalid' });
    // A repeated report changes nothing (reports are at-least-once).
    const vmOf = () => {
      const r = sm.query({ op: 'vm.get', name: 'db' });
      return r.ok ? r.vm : undefined;
    };
    const before = vmOf();
    expect(report(7, 'starting')).toMatchObject({ ok: true });
    expect(vmOf()).toEqual(before);
    for (let i = 0; i < VM_EVENTS_MAX + 10; i++) report(10 + i, i % 2 === 0 ? 'running' : 'failed');
    const vm = sm.query({ op: 'vm.get', name: 'db' });
    expect(vm.ok && vm.vm!.events.length).toBe(VM_EVENTS_MAX);
    // A new put is a new generation: the old generation's reports are stale from now on.
    sm.apply(100, {
      op: 'vm.put',
      node: 'n1',
      atMs: 1,
      spec: { version: 1, name: 'db', runner: RUNNER },
    });
    expect(report(101, 'running', 2)).toMatchObject({ ok: false, code: 'stale' });
    expect(report(102, 'running', 100)).toMatchObject({ ok: true });
  });

  it('vm.stop sets desired stopped; vm.rm deletes; unknown names are notFound', () => {
    const sm = withMember();
    sm.apply(2, {
      op: 'vm.put',
      node: 'n1',
      atMs: 1,
      spec: { version: 1, name: 'db', runner: RUNNER },
    });
    expect(sm.apply(3, { op: 'vm.stop', name: 'db', atMs: 2 })).toMatchObject({
      ok: true,
      vm: { desired: 'stopped' },
    });
    expect(sm.apply(4, { op: 'vm.stop', name: 'nope', atMs: 2 })).toMatchObject({
      code: 'notFound',
    });
    expect(sm.query({ op: 'vm.list', node: 'n1' })).toMatchObject({
      ok: true,
      vms: [{ name: 'db' }],
    });
    expect(sm.apply(5, { op: 'vm.rm', name: 'db' })).toMatchObject({ ok: true });
    expect(sm.query({ op: 'vm.list' })).toMatchObject({ ok: true, vms: [] });
    expect(sm.apply(6, { op: 'vm.rm', name: 'db' })).toMatchObject({ code: 'notFound' });
  });

  it('counts versions per name: 1 at the first put, +1 at each replacing put, 1 after rm', () => {
    const sm = withMember();
    const put = (index: number, name: string, spec: Record<string, unknown> = {}) =>
      sm.apply(index, {
        op: 'vm.put',
        node: 'n1',
        atMs: index,
        spec: { version: 1, name, runner: RUNNER, ...spec },
      });
    const vmOf = (name: string) => {
      const r = sm.query({ op: 'vm.get', name });
      return r.ok ? r.vm! : undefined;
    };
    expect(put(2, 'db')).toMatchObject({ ok: true, vm: { generation: 2, version: 1 } });
    // A refused put replaces nothing; reports and stops are not new specs.
    expect(put(3, 'db', { memoryMiB: 1 << 30 })).toMatchObject({ ok: false });
    sm.apply(4, {
      op: 'vm.report',
      name: 'db',
      node: 'n1',
      generation: 2,
      state: 'running',
      atMs: 4,
    });
    sm.apply(5, { op: 'vm.stop', name: 'db', atMs: 5 });
    expect(vmOf('db')).toMatchObject({ generation: 2, version: 1 });
    expect(put(6, 'db', { memoryMiB: 512 })).toMatchObject({ vm: { generation: 6, version: 2 } });
    expect(put(7, 'web')).toMatchObject({ vm: { generation: 7, version: 1 } });
    expect(put(8, 'db')).toMatchObject({ vm: { generation: 8, version: 3 } });
    // Each event names the version it belongs to.
    sm.apply(9, {
      op: 'vm.report',
      name: 'db',
      node: 'n1',
      generation: 8,
      state: 'failed',
      atMs: 9,
    });
    expect(vmOf('db')!.events.map((e) => [e.state, e.version])).toEqual([
      ['pending', 1],
      ['running', 1],
      ['pending', 2],
      ['pending', 3],
      ['failed', 3],
    ]);
    // A removed name starts again: its history went with it.
    sm.apply(10, { op: 'vm.rm', name: 'db' });
    expect(put(11, 'db')).toMatchObject({ vm: { generation: 11, version: 1 } });
  });

  it('gives every instance of a group its group version, also instances a put adds', () => {
    const sm = withMember();
    const put = (index: number, count: number) =>
      sm.apply(index, {
        op: 'vm.put',
        node: 'n1',
        atMs: index,
        spec: { version: 1, name: 'web', runner: RUNNER, count },
      });
    const versions = () => {
      const r = sm.query({ op: 'vm.list' });
      return r.ok ? r.vms!.map((v) => [v.name, v.version]) : [];
    };
    put(2, 2);
    expect(versions()).toEqual([
      ['web-0', 1],
      ['web-1', 1],
    ]);
    put(3, 3);
    expect(versions()).toEqual([
      ['web-0', 2],
      ['web-1', 2],
      ['web-2', 2],
    ]);
    // Down to one instance, which takes the group's plain name: the group's count goes on.
    put(4, 1);
    expect(versions()).toEqual([['web', 3]]);
  });

  it('restores snapshot rows written before versions as version 1; refuses a bad version', () => {
    const sm = withMember();
    const put = (index: number) =>
      sm.apply(index, {
        op: 'vm.put',
        node: 'n1',
        atMs: index,
        spec: { version: 1, name: 'db', runner: RUNNER },
      });
    put(2);
    put(3);
    const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
    const image = packr.unpack(sm.snapshot()) as unknown[];
    const rows = image[5] as Record<string, unknown>[];
    expect(rows[0]).toMatchObject({ name: 'db', generation: 3, version: 2 });
    const withRow = (row: Record<string, unknown>) => {
      const copy = [...image];
      copy[5] = [row];
      return packr.pack(copy);
    };
    const { version: _old, ...before } = rows[0]!;
    const events = (before.events as Record<string, unknown>[]).map(({ version: _v, ...e }) => e);
    const old = new StateMachine();
    old.restore(withRow({ ...before, events }));
    expect(old.query({ op: 'vm.get', name: 'db' })).toMatchObject({
      ok: true,
      vm: { generation: 3, version: 1, events: [{ state: 'pending' }, { state: 'pending' }] },
    });
    // The restored row takes the shape vm.put writes (same keys, same order: same bytes).
    const restored = (packr.unpack(old.snapshot()) as unknown[])[5] as Record<string, unknown>[];
    expect(Object.keys(restored[0]!)).toEqual(Object.keys(rows[0]!));
    // Replaced after the restore, it counts on from there.
    old.apply(4, {
      op: 'vm.put',
      node: 'n1',
      atMs: 4,
      spec: { version: 1, name: 'db', runner: RUNNER },
    });
    expect(old.query({ op: 'vm.get', name: 'db' })).toMatchObject({ vm: { version: 2 } });
    for (const version of [0, -1, 1.5, '2']) {
      expect(() => new StateMachine().restore(withRow({ ...before, version }))).toThrow(
        /malformed snapshot VM row/,
      );
    }
  });

  it('snapshots carry the VM table; a version 2 image restores with none', () => {
    const sm = withMember();
    sm.apply(2, {
      op: 'vm.put',
      node: 'n1',
      atMs: 1,
      spec: { version: 1, name: 'db', runner: RUNNER },
    });
    sm.apply(3, {
      op: 'vm.report',
      name: 'db',
      node: 'n1',
      generation: 2,
      state: 'failed',
      reason: 'exit 1',
      atMs: 9,
    });
    const copy = new StateMachine();
    copy.restore(sm.snapshot());
    expect(copy.snapshot()).toEqual(sm.snapshot());
    expect(copy.query({ op: 'vm.get', name: 'db' })).toEqual(
      sm.query({ op: 'vm.get', name: 'db' }),
    );
    const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
    const v2 = packr.pack([2, 7, [['k', 'v', 3]], [['n1', [], 'voter']], []]);
    copy.restore(v2);
    expect(copy.applied).toBe(7);
    expect(copy.query({ op: 'vm.list' })).toMatchObject({ ok: true, vms: [] });
    expect(copy.query({ op: 'kv.get', key: 'k' })).toMatchObject({ ok: true, value: 'v' });
  });
});

describe('vm.health', () => {
  const spec = { version: 1, name: 'db', runner: RUNNER, health: [{ console: 'db ready' }] };
  function running(): StateMachine {
    const sm = withMember();
    sm.apply(2, { op: 'vm.put', node: 'n1', atMs: 1, spec });
    return sm;
  }
  const vmOf = (sm: StateMachine): VmEntry => {
    const r = sm.query({ op: 'vm.get', name: 'db' });
    if (!r.ok || r.vm === undefined) throw new Error('no db');
    return r.vm;
  };
  const health = (
    sm: StateMachine,
    index: number,
    v: { healthy: boolean; check?: string; message?: string; generation?: number; node?: string },
  ) =>
    sm.apply(index, {
      op: 'vm.health',
      name: 'db',
      node: v.node ?? 'n1',
      generation: v.generation ?? 2,
      healthy: v.healthy,
      check: v.check ?? 'console "db ready"',
      ...(v.message !== undefined ? { message: v.message } : {}),
      atMs: index * 1000,
    });

  it('sets the verdict for the current node and generation only; the same verdict again is stale', () => {
    const sm = running();
    expect(vmOf(sm).health).toBeUndefined();
    expect(health(sm, 3, { healthy: true })).toMatchObject({ ok: true });
    expect(vmOf(sm).health).toEqual({
      generation: 2,
      healthy: true,
      sinceMs: 3000,
      check: 'console "db ready"',
    });
    const before = sm.snapshot();
    expect(health(sm, 4, { healthy: true })).toMatchObject({ ok: false, code: 'stale' });
    expect(health(sm, 5, { healthy: false, generation: 1 })).toMatchObject({ code: 'stale' });
    expect(health(sm, 6, { healthy: false, node: 'n2' })).toMatchObject({ code: 'stale' });
    // Nothing changed but the applied index.
    const { health: h } = vmOf(sm);
    expect(h).toMatchObject({ healthy: true, sinceMs: 3000 });
    expect(sm.snapshot().length).toBe(before.length);
    expect(
      sm.apply(7, {
        op: 'vm.health',
        name: 'nope',
        node: 'n1',
        generation: 2,
        healthy: true,
        check: 'x',
        atMs: 1,
      }),
    ).toMatchObject({ code: 'notFound' });
  });

  it('moves sinceMs only when the verdict flips; a new message for the same verdict keeps it', () => {
    const sm = running();
    health(sm, 3, { healthy: false, check: 'http 10.0.0.2:80/health', message: '503' });
    expect(vmOf(sm).health).toMatchObject({ healthy: false, sinceMs: 3000, message: '503' });
    expect(
      health(sm, 4, { healthy: false, check: 'http 10.0.0.2:80/health', message: '500' }),
    ).toMatchObject({ ok: true });
    expect(vmOf(sm).health).toMatchObject({ healthy: false, sinceMs: 3000, message: '500' });
    health(sm, 5, { healthy: true });
    expect(vmOf(sm).health).toEqual({
      generation: 2,
      healthy: true,
      sinceMs: 5000,
      check: 'console "db ready"',
    });
  });

  it('is dropped by a new generation (vm.put) and by a new node (release, node down)', () => {
    const sm = running();
    health(sm, 3, { healthy: true });
    sm.apply(4, { op: 'vm.put', node: 'n1', atMs: 4, spec });
    expect(vmOf(sm).health).toBeUndefined();
    expect(health(sm, 5, { healthy: true })).toMatchObject({ code: 'stale' }); // generation 2
    expect(health(sm, 6, { healthy: true, generation: 4 })).toMatchObject({ ok: true });
    expect(
      sm.apply(7, { op: 'vm.release', name: 'db', generation: 4, reason: 'drain', atMs: 7 }),
    ).toMatchObject({ ok: true });
    expect(vmOf(sm)).toMatchObject({ node: '', state: 'pending' });
    expect(vmOf(sm).health).toBeUndefined();
    expect(health(sm, 8, { healthy: true, generation: 4 })).toMatchObject({ code: 'stale' });

    const down = running();
    health(down, 3, { healthy: true });
    expect(
      down.apply(4, {
        op: 'node.register',
        id: 'n1',
        arch: 'x86_64',
        capacity: { cpus: 4, memoryMiB: 4096 },
        labels: {},
        backends: ['microvm'],
      }),
    ).toMatchObject({ ok: true });
    expect(vmOf(down).health).toMatchObject({ healthy: true });
    expect(down.apply(5, { op: 'node.status', id: 'n1', down: true, atMs: 5 })).toMatchObject({
      ok: true,
    });
    expect(vmOf(down)).toMatchObject({ node: '', state: 'pending' });
    expect(vmOf(down).health).toBeUndefined();
  });

  it('checks the shape, with check and message bounded by VM_REASON_BYTES_MAX at the edge', () => {
    const sm = running();
    const text = (n: number) => 'x'.repeat(n);
    expect(health(sm, 3, { healthy: false, check: text(VM_REASON_BYTES_MAX) })).toMatchObject({
      ok: true,
    });
    expect(health(sm, 4, { healthy: false, check: text(VM_REASON_BYTES_MAX + 1) })).toMatchObject({
      ok: false,
      code: 'invalid',
    });
    expect(
      health(sm, 5, { healthy: false, check: 'c', message: text(VM_REASON_BYTES_MAX) }),
    ).toMatchObject({ ok: true });
    const long = health(sm, 6, {
      healthy: false,
      check: 'c',
      message: text(VM_REASON_BYTES_MAX + 1),
    });
    expect(long).toMatchObject({ ok: false, code: 'invalid' });
    expect(long.ok === false && long.message).toMatch(
      /message must be a string of at most VM_REASON_BYTES_MAX/,
    );
    expect(health(sm, 7, { healthy: true, check: '' })).toMatchObject({ code: 'invalid' });
    expect(health(sm, 8, { healthy: true, generation: 0 })).toMatchObject({ code: 'invalid' });
    expect(
      sm.apply(9, {
        op: 'vm.health',
        name: 'db',
        node: 'n1',
        generation: 2,
        healthy: 'yes',
        check: 'c',
        atMs: 9,
      } as never),
    ).toMatchObject({ code: 'invalid' });
    expect(
      sm.apply(10, {
        op: 'vm.health',
        name: 'db',
        generation: 2,
        healthy: true,
        check: 'c',
        atMs: 9,
      } as never),
    ).toMatchObject({ code: 'invalid' });
  });

  it('rides in the snapshot rows; a malformed one is refused', () => {
    const sm = running();
    health(sm, 3, { healthy: false, check: 'tcp 10.0.0.2:22', message: 'connection refused' });
    const copy = new StateMachine();
    copy.restore(sm.snapshot());
    expect(copy.snapshot()).toEqual(sm.snapshot());
    expect(vmOf(copy).health).toEqual(vmOf(sm).health);
    const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
    const image = packr.unpack(sm.snapshot()) as unknown[];
    const row = (image[5] as Record<string, unknown>[])[0]!;
    for (const bad of [{ ...vmOf(sm).health, healthy: 'no' }, { generation: 2 }, 'healthy']) {
      const copy2 = [...image];
      copy2[5] = [{ ...row, health: bad }];
      expect(() => new StateMachine().restore(packr.pack(copy2))).toThrow(
        /malformed snapshot VM row/,
      );
    }
  });
});
