import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { isRaftError } from '../../consensus/index.ts';
import {
  decodeEnvelope,
  encodeEnvelope,
  KEY_BYTES_MAX,
  MEMBER_NAME_BYTES_MAX,
  parseRequestId,
  REMOVED_MEMBERS_MAX,
  SESSION_WINDOW,
  SESSIONS_MAX,
  StateMachine,
  VALUE_BYTES_MAX,
} from './machine.ts';

describe('StateMachine: key-value with lin-kv semantics', () => {
  it('put, get, cas and del, with revisions', () => {
    const sm = new StateMachine();
    expect(sm.query({ op: 'kv.get', key: 'a' })).toMatchObject({ ok: false, code: 'notFound' });
    expect(sm.apply(1, { op: 'kv.put', key: 'a', value: '1' })).toEqual({ ok: true, revision: 1 });
    expect(sm.query({ op: 'kv.get', key: 'a' })).toEqual({ ok: true, value: '1', revision: 1 });
    expect(sm.apply(2, { op: 'kv.cas', key: 'a', from: '2', to: '3' })).toMatchObject({
      ok: false,
      code: 'casMismatch',
      current: '1',
    });
    expect(sm.apply(3, { op: 'kv.cas', key: 'a', from: '1', to: '3' })).toEqual({
      ok: true,
      revision: 3,
    });
    expect(sm.apply(4, { op: 'kv.cas', key: 'b', from: '1', to: '2' })).toMatchObject({
      ok: false,
      code: 'notFound',
    });
    expect(sm.apply(5, { op: 'kv.cas', key: 'b', from: null, to: 'new' })).toEqual({
      ok: true,
      revision: 5,
    });
    expect(sm.apply(6, { op: 'kv.cas', key: 'b', from: null, to: 'again' })).toMatchObject({
      ok: false,
      code: 'casMismatch',
    });
    expect(sm.apply(7, { op: 'kv.del', key: 'a' })).toEqual({ ok: true, revision: 7 });
    expect(sm.apply(8, { op: 'kv.del', key: 'a' })).toMatchObject({ ok: false, code: 'notFound' });
    expect(sm.query({ op: 'kv.list', prefix: '' })).toEqual({
      ok: true,
      revision: 8,
      entries: [{ key: 'b', value: 'new', revision: 5 }],
    });
    expect(sm.applied).toBe(8);
  });

  it('lists by prefix in key order, with a limit', () => {
    const sm = new StateMachine();
    for (const [i, key] of ['b/2', 'a/1', 'b/1', 'c'].entries()) {
      sm.apply(i + 1, { op: 'kv.put', key, value: key });
    }
    const r = sm.query({ op: 'kv.list', prefix: 'b/' });
    expect(r.ok && r.entries?.map((e) => e.key)).toEqual(['b/1', 'b/2']);
    const l = sm.query({ op: 'kv.list', prefix: '', limit: 2 });
    expect(l.ok && l.entries?.map((e) => e.key)).toEqual(['a/1', 'b/1']);
  });

  it('members: put, replace and remove', () => {
    const sm = new StateMachine();
    sm.apply(1, {
      op: 'member.put',
      member: { id: 'p2', addrs: ['/ip4/127.0.0.1/tcp/2'], role: 'voter' },
    });
    sm.apply(2, { op: 'member.put', member: { id: 'p1', addrs: [], role: 'learner' } });
    sm.apply(3, { op: 'member.put', member: { id: 'p1', addrs: [], role: 'voter' } });
    const r = sm.query({ op: 'members' });
    expect(r.ok && r.members?.map((m) => `${m.id}:${m.role}`)).toEqual(['p1:voter', 'p2:voter']);
    // A removal leaves a tombstone even for an ID without a record (removed before recorded).
    expect(sm.apply(4, { op: 'member.remove', id: 'p9' })).toMatchObject({ ok: true });
    expect(sm.isRemoved('p9')).toBe(true);
    expect(sm.apply(5, { op: 'member.remove', id: 'p1' })).toMatchObject({ ok: true });
    expect(sm.apply(6, { op: 'member.remove', id: 'p1' })).toMatchObject({ ok: true });
  });

  it('a removed member leaves a tombstone: it cannot be recorded again, across a snapshot', () => {
    const sm = new StateMachine();
    sm.apply(1, { op: 'member.put', member: { id: 'p1', addrs: [], role: 'voter' } });
    sm.apply(2, { op: 'member.remove', id: 'p1', atMs: 5 });
    expect(sm.isRemoved('p1')).toBe(true);
    expect(sm.isRemoved('p2')).toBe(false);
    const again = { op: 'member.put', member: { id: 'p1', addrs: [], role: 'learner' } };
    expect(sm.apply(3, again)).toMatchObject({ ok: false, code: 'removed' });
    expect(sm.member('p1')).toBeUndefined();
    const copy = new StateMachine();
    copy.restore(sm.snapshot());
    expect(copy.isRemoved('p1')).toBe(true);
    expect(copy.apply(4, again)).toMatchObject({ ok: false, code: 'removed' });
  });

  it(`remembers at most REMOVED_MEMBERS_MAX (${REMOVED_MEMBERS_MAX}) removals, forgetting the oldest`, () => {
    const sm = new StateMachine();
    let i = 0;
    for (let n = 0; n <= REMOVED_MEMBERS_MAX; n++) {
      sm.apply(++i, { op: 'member.put', member: { id: `m${n}`, addrs: [], role: 'learner' } });
      sm.apply(++i, { op: 'member.remove', id: `m${n}` });
    }
    expect(sm.isRemoved('m0')).toBe(false);
    expect(sm.isRemoved('m1')).toBe(true);
    expect(sm.isRemoved(`m${REMOVED_MEMBERS_MAX}`)).toBe(true);
  });

  it('removing a member releases its VMs: unplaced, pending, with the reason', () => {
    const sm = new StateMachine();
    sm.apply(1, { op: 'member.put', member: { id: 'p1', addrs: [], role: 'voter' } });
    sm.apply(2, { op: 'member.put', member: { id: 'p2', addrs: [], role: 'voter' } });
    const spec = (name: string) => ({
      version: 1,
      name,
      runner: '/nix/store/0c6lw3rq0qvd4n4ys4fvnnbd5bxxc0nk-microvm-run-db',
    });
    sm.apply(3, { op: 'vm.put', spec: spec('a'), node: 'p1', atMs: 1 });
    sm.apply(4, { op: 'vm.put', spec: spec('b'), node: 'p2', atMs: 1 });
    sm.apply(5, {
      op: 'vm.report',
      name: 'a',
      node: 'p1',
      generation: 3,
      state: 'running',
      atMs: 2,
    });
    sm.apply(6, { op: 'member.remove', id: 'p1', atMs: 7 });
    const a = sm.vms.get('a')!;
    expect(a).toMatchObject({ node: '', state: 'pending' });
    expect(a.reason).toContain('removed');
    expect(a.events.at(-1)).toMatchObject({ atMs: 7, state: 'pending' });
    expect(sm.vms.list('p1')).toEqual([]);
    expect(sm.vms.get('b')!.node).toBe('p2');
    const copy = new StateMachine();
    copy.restore(sm.snapshot());
    expect(copy.vms.get('a')!.node).toBe('');
  });

  it('members carry an optional name, bounded, kept through a snapshot', () => {
    const sm = new StateMachine();
    const name = 'n'.repeat(MEMBER_NAME_BYTES_MAX);
    expect(
      sm.apply(1, { op: 'member.put', member: { id: 'p1', addrs: [], role: 'voter', name } }),
    ).toMatchObject({ ok: true });
    let index = 1;
    for (const bad of ['n'.repeat(MEMBER_NAME_BYTES_MAX + 1), '', '-x', 'a b', 7]) {
      expect(
        sm.apply(++index, {
          op: 'member.put',
          member: { id: 'p2', addrs: [], role: 'voter', name: bad },
        } as never),
      ).toMatchObject({ ok: false, code: 'invalid' });
    }
    const copy = new StateMachine();
    copy.restore(sm.snapshot());
    expect(copy.member('p1')?.name).toBe(name);
    expect(copy.snapshot()).toEqual(sm.snapshot());
  });

  it('a member without a name snapshots as before names existed (old snapshots load)', () => {
    const sm = new StateMachine();
    sm.apply(1, { op: 'member.put', member: { id: 'p1', addrs: ['/a'], role: 'voter' } });
    const image = sm.snapshot();
    const rows = new Packr({ useRecords: false, mapsAsObjects: true }).unpack(image) as unknown[];
    expect(rows[3]).toEqual([['p1', ['/a'], 'voter']]);
    const copy = new StateMachine();
    copy.restore(image);
    expect(copy.member('p1')).toEqual({ id: 'p1', addrs: ['/a'], role: 'voter' });
  });

  it('bad commands change nothing but the applied index, identically everywhere', () => {
    const sm = new StateMachine();
    sm.apply(1, { op: 'kv.put', key: 'a', value: '1' });
    const bad: unknown[] = [
      null,
      'x',
      { op: 'kv.nope' },
      { op: 'kv.put', key: '', value: 'v' },
      { op: 'kv.put', key: 'k', value: 3 },
      { op: 'kv.put', key: 'k'.repeat(KEY_BYTES_MAX + 1), value: 'v' },
      { op: 'kv.put', key: 'k', value: 'v'.repeat(VALUE_BYTES_MAX + 1) },
      { op: 'kv.cas', key: 'a', from: 1, to: '2' },
      { op: 'member.put', member: { id: 'x', addrs: 'nope', role: 'voter' } },
      { op: 'member.put', member: { id: 'x', addrs: [], role: 'king' } },
    ];
    const before = sm.snapshot();
    bad.forEach((c, i) => {
      expect(sm.apply(2 + i, c)).toMatchObject({ ok: false, code: 'invalid' });
    });
    expect(sm.applied).toBe(1 + bad.length);
    // Only the applied index moved.
    const other = new StateMachine();
    other.restore(before);
    other.skip(1 + bad.length);
    expect(sm.snapshot()).toEqual(other.snapshot());
  });

  it('bad queries are refused', () => {
    const sm = new StateMachine();
    expect(sm.query({ op: 'kv.get', key: 5 })).toMatchObject({ ok: false, code: 'invalid' });
    expect(sm.query({ op: 'kv.list', prefix: '', limit: 0 })).toMatchObject({
      ok: false,
      code: 'invalid',
    });
    expect(sm.query({ op: 'drop tables' })).toMatchObject({ ok: false, code: 'invalid' });
  });

  it('applies in log order only', () => {
    const sm = new StateMachine();
    sm.apply(3, { op: 'kv.put', key: 'a', value: '1' });
    expect(() => sm.apply(3, { op: 'kv.put', key: 'a', value: '1' })).toThrow(/applied after 3/);
    expect(() => sm.skip(2)).toThrow(/skipped after 3/);
  });

  it('asserts its applied index: a safe integer that only moves forward (RaftError INVARIANT)', () => {
    const sm = new StateMachine();
    sm.skip(2);
    for (const bad of [Number.NaN, 2.5, 2 ** 53, -1]) {
      let thrown: unknown;
      try {
        sm.apply(bad, { op: 'kv.put', key: 'a', value: '1' });
      } catch (e) {
        thrown = e;
      }
      expect(isRaftError(thrown, 'INVARIANT')).toBe(true);
    }
    expect(() => sm.skip(2)).toThrow(
      /raft invariant violated: state machine: entry 2 skipped after 2/,
    );
    expect(sm.applied).toBe(2);
    expect(sm.query({ op: 'kv.get', key: 'a' })).toMatchObject({ ok: false, code: 'notFound' });
  });
});

describe('StateMachine snapshots', () => {
  it('are canonical: the same state built in another order gives the same bytes', () => {
    const a = new StateMachine();
    const b = new StateMachine();
    a.apply(1, { op: 'kv.put', key: 'x', value: '1' });
    a.apply(2, { op: 'kv.put', key: 'y', value: '2' });
    b.skip(1);
    b.apply(2, { op: 'kv.put', key: 'y', value: '2' });
    // Same keys and values but different revisions: different state, different bytes.
    expect(a.snapshot()).not.toEqual(b.snapshot());
    const c = new StateMachine();
    c.restore(a.snapshot());
    expect(c.snapshot()).toEqual(a.snapshot());
    expect(c.applied).toBe(2);
    expect(c.query({ op: 'kv.get', key: 'x' })).toEqual({ ok: true, value: '1', revision: 1 });
  });

  it('restore refuses an unreadable image and keeps its state', () => {
    const sm = new StateMachine();
    sm.apply(1, { op: 'kv.put', key: 'x', value: '1' });
    const before = sm.snapshot();
    expect(() => sm.restore(new Uint8Array([1, 2, 3]))).toThrow();
    expect(() =>
      sm.restore(encodeEnvelope({ requestId: 'r', command: { op: 'kv.del', key: 'x' } })),
    ).toThrow(/not a version 2 to 7 snapshot/);
    expect(sm.snapshot()).toEqual(before);
  });
});

describe('entry envelopes', () => {
  it('round-trip, and say what is wrong with bad payloads', () => {
    const data = encodeEnvelope({
      requestId: 'n1/ab.1',
      command: { op: 'kv.put', key: 'k', value: 'v' },
    });
    expect(decodeEnvelope(data)).toEqual({
      requestId: 'n1/ab.1',
      command: { op: 'kv.put', key: 'k', value: 'v' },
    });
    expect(decodeEnvelope(new Uint8Array([0xc1]))).toMatch(/undecodable|not \[requestId/);
    expect(
      decodeEnvelope(encodeEnvelope({ requestId: 'r', command: { op: 'nope' } as never })),
    ).toMatch(/unknown command/);
    expect(
      decodeEnvelope(
        encodeEnvelope({ requestId: 'r'.repeat(200), command: { op: 'kv.del', key: 'k' } }),
      ),
    ).toBe('bad request ID');
  });
});

describe('client sessions: a request takes effect at most once', () => {
  it('a second copy of a request ID is a no-op, even across a snapshot', () => {
    const sm = new StateMachine();
    expect(
      sm.applyRequest(1, 'n1/ab.1', { op: 'kv.cas', key: 'x', from: null, to: 'a' }),
    ).toMatchObject({ ok: true });
    expect(sm.applyRequest(2, 'n1/ab.2', { op: 'kv.put', key: 'x', value: 'b' })).toMatchObject({
      ok: true,
    });
    // The cas again would fail; the put again would overwrite a newer value: neither happens.
    expect(sm.applyRequest(3, 'n1/ab.3', { op: 'kv.put', key: 'x', value: 'c' })).toMatchObject({
      ok: true,
    });
    expect(sm.applyRequest(4, 'n1/ab.2', { op: 'kv.put', key: 'x', value: 'b' })).toMatchObject({
      code: 'duplicate',
    });
    expect(sm.query({ op: 'kv.get', key: 'x' })).toMatchObject({ value: 'c' });
    const copy = new StateMachine();
    copy.restore(sm.snapshot());
    expect(
      copy.applyRequest(5, 'n1/ab.1', { op: 'kv.cas', key: 'x', from: null, to: 'a' }),
    ).toMatchObject({
      code: 'duplicate',
    });
    expect(copy.applied).toBe(5);
    // Out of order within the window is fine; other sessions are independent.
    expect(copy.applyRequest(6, 'n1/ab.0', { op: 'kv.put', key: 'y', value: '0' })).toMatchObject({
      ok: true,
    });
    expect(copy.applyRequest(7, 'n2/cd.1', { op: 'kv.put', key: 'z', value: '1' })).toMatchObject({
      ok: true,
    });
  });

  it('refuses a copy older than SESSION_WINDOW, and forgets the least recent of SESSIONS_MAX sessions', () => {
    const sm = new StateMachine();
    sm.applyRequest(1, `s.${(SESSION_WINDOW + 5).toString(36)}`, {
      op: 'kv.put',
      key: 'k',
      value: 'v',
    });
    expect(sm.applyRequest(2, 's.4', { op: 'kv.put', key: 'k', value: 'old' })).toMatchObject({
      code: 'duplicate',
    });
    expect(sm.applyRequest(3, 's.6', { op: 'kv.put', key: 'k', value: 'w' })).toMatchObject({
      ok: true,
    });
    let index = 3;
    for (let i = 0; i < SESSIONS_MAX; i++)
      sm.applyRequest(++index, `other${i}.1`, { op: 'kv.del', key: 'nope' });
    // Session 's' was the least recently applied: forgotten, so its old seq applies again.
    expect(
      sm.applyRequest(++index, 's.6', { op: 'kv.put', key: 'k', value: 'again' }),
    ).toMatchObject({ ok: true });
    expect(sm.applyRequest(++index, 'other5.1', { op: 'kv.del', key: 'nope' })).toMatchObject({
      code: 'duplicate',
    });
  });

  it('remembers at most SESSION_WINDOW seqs per session, across small steps and big jumps', () => {
    const sm = new StateMachine();
    let index = 0;
    const put = (seq: number) =>
      sm.applyRequest(++index, `s.${seq.toString(36)}`, {
        op: 'kv.put',
        key: 'k',
        value: `${seq}`,
      });
    for (let seq = 0; seq < 3 * SESSION_WINDOW; seq++) put(seq);
    put(10 * SESSION_WINDOW); // a jump past the whole window
    put(10 * SESSION_WINDOW - 1); // within the window below the new highest: still applied
    const rows = new Packr({ useRecords: false }).unpack(sm.snapshot())[4] as [
      string,
      number,
      number[],
      number,
    ][];
    expect(rows[0]![2]).toEqual([10 * SESSION_WINDOW - 1, 10 * SESSION_WINDOW]);
    for (let seq = 10 * SESSION_WINDOW + 1; seq <= 12 * SESSION_WINDOW; seq++) put(seq);
    const after = new Packr({ useRecords: false }).unpack(sm.snapshot())[4] as [
      string,
      number,
      number[],
      number,
    ][];
    expect(after[0]![2].length).toBe(SESSION_WINDOW);
    expect(after[0]![2][0]).toBe(11 * SESSION_WINDOW + 1);
  });

  it('request IDs without a session suffix are applied as they come', () => {
    expect(parseRequestId('n1/ab.z')).toEqual({ session: 'n1/ab', seq: 35 });
    expect(parseRequestId('plain')).toBeUndefined();
    expect(parseRequestId('a.B')).toBeUndefined();
    const sm = new StateMachine();
    sm.applyRequest(1, 'plain', { op: 'kv.put', key: 'k', value: '1' });
    expect(sm.applyRequest(2, 'plain', { op: 'kv.put', key: 'k', value: '2' })).toMatchObject({
      ok: true,
    });
  });
});
