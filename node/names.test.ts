import { describe, expect, it } from 'vitest';
import { NAME_SUFFIX_CHARS, resolveMember, SHORT_ID_CHARS, shortId, uniqueName } from './names.ts';

const A = '12D3KooWAAAAbbbbCCCCddddEEEEffffGGGGhhhhIIIIjjjjKKKK';
const B = '12D3KooWAAAAzzzzCCCCddddEEEEffffGGGGhhhhIIIIjjjjKKKK';
const C = '12D3KooWQQQQbbbbCCCCddddEEEEffffGGGGhhhhIIIIjjjjKKKK';

describe('short IDs', () => {
  it('are the 8 characters after the head every Ed25519 peer ID shares', () => {
    expect(shortId(A)).toBe('AAAAbbbb');
    expect(shortId(A)).toHaveLength(SHORT_ID_CHARS);
    expect(shortId('p1')).toBe('p1');
  });
});

describe('resolveMember', () => {
  const members = [{ id: A, name: 'alpha' }, { id: B, name: 'beta' }, { id: C }];
  it('takes a name, a full ID, a short ID, or a unique prefix (with or without the head)', () => {
    expect(resolveMember('alpha', members)).toEqual({ ok: true, id: A });
    expect(resolveMember(B, members)).toEqual({ ok: true, id: B });
    expect(resolveMember(shortId(C), members)).toEqual({ ok: true, id: C });
    expect(resolveMember('AAAAz', members)).toEqual({ ok: true, id: B });
    expect(resolveMember('12D3KooWQ', members)).toEqual({ ok: true, id: C });
  });
  it('says when nothing or several members match', () => {
    expect(resolveMember('AAAA', members)).toEqual({
      ok: false,
      why: 'ambiguous',
      candidates: [A, B],
    });
    expect(resolveMember('12D3KooW', members)).toMatchObject({ ok: false, why: 'ambiguous' });
    expect(resolveMember('gamma', members)).toEqual({ ok: false, why: 'none', candidates: [] });
    expect(resolveMember('', members)).toMatchObject({ ok: false, why: 'none' });
  });
  it('prefers an exact name over an ID prefix', () => {
    expect(resolveMember('AAAA', [...members, { id: C, name: 'AAAA' }])).toEqual({
      ok: true,
      id: C,
    });
  });
});

describe('uniqueName', () => {
  it('keeps a name nobody else holds', () => {
    expect(uniqueName('alpha', A, [{ id: B, name: 'beta' }])).toBe('alpha');
    // Its own record does not count.
    expect(uniqueName('alpha', A, [{ id: A, name: 'alpha' }])).toBe('alpha');
  });
  it('the smaller ID keeps a name two members want; the other takes a suffix', () => {
    const table = [
      { id: A, name: 'vm' },
      { id: B, name: 'vm' },
    ];
    expect(uniqueName('vm', A, table)).toBe('vm');
    expect(uniqueName('vm', B, table)).toBe(`vm-${shortId(B).slice(0, NAME_SUFFIX_CHARS)}`);
  });
});
