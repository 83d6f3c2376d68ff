// The cache's token table in the state machine: made and revoked by commands, looked up by the
// secret's hash, bounded (names, count), kept across a snapshot, and old (version 4) images load.

import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { StateMachine } from './machine.ts';
import { TOKEN_NAME_BYTES_MAX, TOKENS_MAX, type TokenScope, TokenTable } from './tokens.ts';

const hex = (n: number) => n.toString(16).padStart(64, '0');
const put = (name: string, n: number, scopes: TokenScope[] = ['push']) => ({
  op: 'token.put' as const,
  name,
  sha256: hex(n),
  scopes,
  atMs: 1000 + n,
});

describe('token table', () => {
  it('puts, finds by hash, lists by name, revokes', () => {
    const sm = new StateMachine();
    expect(sm.apply(1, put('ci', 1, ['push', 'read']))).toMatchObject({
      ok: true,
      token: { name: 'ci', scopes: ['read', 'push'], createdAtMs: 1001, revision: 1 },
    });
    sm.apply(2, put('a-reader', 2, ['read']));
    expect(sm.tokens.byHash(hex(1))?.name).toBe('ci');
    const list = sm.query({ op: 'token.list' });
    expect(list.ok && list.tokens?.map((t) => t.name)).toEqual(['a-reader', 'ci']);
    expect(sm.apply(3, { op: 'token.rm', name: 'ci' })).toMatchObject({ ok: true });
    expect(sm.tokens.byHash(hex(1))).toBeUndefined();
    expect(sm.apply(4, { op: 'token.rm', name: 'ci' })).toMatchObject({
      ok: false,
      code: 'notFound',
    });
  });

  it('refuses a second token of a name or of a secret, and bad fields, changing nothing', () => {
    const sm = new StateMachine();
    sm.apply(1, put('ci', 1));
    expect(sm.apply(2, put('ci', 2))).toMatchObject({ ok: false, message: /exists: revoke/ });
    expect(sm.apply(3, put('other', 1))).toMatchObject({ ok: false, code: 'invalid' });
    const before = sm.snapshot();
    const bad = [
      { ...put('x', 3), sha256: 'ABC' },
      { ...put('x', 3), scopes: [] },
      { ...put('x', 3), scopes: ['admin' as TokenScope] },
      { ...put('x', 3), scopes: ['push', 'push'] },
      { ...put('x', 3), atMs: 1.5 },
      put('-bad', 3),
      put('has space', 3),
      put('n'.repeat(TOKEN_NAME_BYTES_MAX + 1), 3),
    ];
    let i = 4;
    for (const c of bad) expect(sm.apply(i++, c)).toMatchObject({ ok: false, code: 'invalid' });
    expect(sm.apply(i++, put('n'.repeat(TOKEN_NAME_BYTES_MAX), 3))).toMatchObject({ ok: true });
    expect(before).not.toEqual(sm.snapshot());
  });

  it('holds at most TOKENS_MAX tokens', () => {
    const t = new TokenTable();
    for (let n = 0; n < TOKENS_MAX; n++) {
      expect(t.apply(n + 1, put(`t${n}`, n))).toMatchObject({ ok: true });
    }
    expect(t.apply(TOKENS_MAX + 1, put('one-more', TOKENS_MAX))).toMatchObject({
      ok: false,
      message: /TOKENS_MAX/,
    });
    t.apply(TOKENS_MAX + 2, { op: 'token.rm', name: 't0' });
    expect(t.apply(TOKENS_MAX + 3, put('one-more', TOKENS_MAX))).toMatchObject({ ok: true });
  });

  it('survive a snapshot; version 4 and 5 images (before tokens) still load, with none', () => {
    const sm = new StateMachine();
    sm.apply(1, put('ci', 1));
    sm.apply(2, { op: 'kv.put', key: 'k', value: 'v' });
    const copy = new StateMachine();
    copy.restore(sm.snapshot());
    expect(copy.snapshot()).toEqual(sm.snapshot());
    expect(copy.tokens.byHash(hex(1))?.name).toBe('ci');
    const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
    const rows = packr.unpack(sm.snapshot()) as unknown[];
    expect(rows[0]).toBe(7);
    const v4 = packr.pack([4, ...rows.slice(1, 7)]);
    // Version 5 (the node table, before tokens) loads too, with none.
    const v5 = new StateMachine();
    v5.restore(packr.pack([5, ...rows.slice(1, 8)]));
    expect(v5.tokens.list()).toEqual([]);
    const old = new StateMachine();
    old.restore(v4);
    expect(old.tokens.list()).toEqual([]);
    expect(old.query({ op: 'kv.get', key: 'k' })).toMatchObject({ ok: true, value: 'v' });
    // A bad token row refuses the image and changes nothing.
    const broken = packr.pack([...rows.slice(0, 8), [['ci', 'nothex', ['push'], 1, 1]], rows[9]]);
    const before = copy.snapshot();
    expect(() => copy.restore(broken)).toThrow(/token row/);
    expect(copy.snapshot()).toEqual(before);
  });
});
