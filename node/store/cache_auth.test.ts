// Credentials of the binary cache: the token of HTTP basic (the netrc password) or bearer, the
// header bound at its edge, and the decision by scope (push implies read; reads open unless the
// node asks for tokens; a refused read is a 400 that Nix reports).

import { describe, expect, it } from 'vitest';
import {
  AUTH_HEADER_BYTES_MAX,
  authorize,
  type CacheAuth,
  type CacheToken,
  credentialOf,
  READ_REFUSED_STATUS,
  tokenHash,
} from './cache_auth.ts';

const basic = (user: string, pass: string) =>
  `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

describe('credentialOf', () => {
  it('reads the password of basic and the token of bearer', () => {
    expect(credentialOf(basic('pcr', 'sekret'))).toBe('sekret');
    expect(credentialOf(basic('', 'a:b'))).toBe('a:b');
    expect(credentialOf('Bearer tok123')).toBe('tok123');
    expect(credentialOf('bearer tok123')).toBe('tok123');
  });
  it('takes nothing from a malformed or oversized header', () => {
    expect(credentialOf(undefined)).toBeUndefined();
    expect(credentialOf('Digest x')).toBeUndefined();
    expect(credentialOf(`Basic ${Buffer.from('nocolon').toString('base64')}`)).toBeUndefined();
    expect(credentialOf('Bearer a b')).toBeUndefined();
    const at = `Bearer ${'t'.repeat(AUTH_HEADER_BYTES_MAX - 7)}`;
    expect(at.length).toBe(AUTH_HEADER_BYTES_MAX);
    expect(credentialOf(at)).toBe('t'.repeat(AUTH_HEADER_BYTES_MAX - 7));
    expect(credentialOf(`${at}t`)).toBeUndefined();
  });
});

describe('authorize', () => {
  const tokens = new Map<string, CacheToken>([
    [tokenHash('P'), { name: 'ci', scopes: ['push'] }],
    [tokenHash('R'), { name: 'reader', scopes: ['read'] }],
  ]);
  const open: CacheAuth = { lookup: (h) => tokens.get(h), readNeedsToken: false };
  const closed: CacheAuth = { ...open, readNeedsToken: true };

  it('reads are open by default; pushes need a push token', () => {
    expect(authorize(open, undefined, 'read')).toEqual({ ok: true });
    expect(authorize(undefined, undefined, 'read')).toEqual({ ok: true });
    expect(authorize(open, undefined, 'push')).toMatchObject({ ok: false, status: 401 });
    expect(authorize(open, 'Bearer nope', 'push')).toMatchObject({ ok: false, status: 401 });
    expect(authorize(open, 'Bearer R', 'push')).toMatchObject({ ok: false, status: 403 });
    expect(authorize(open, basic('x', 'P'), 'push')).toEqual({ ok: true, token: 'ci' });
    expect(authorize(undefined, 'Bearer P', 'push')).toMatchObject({ ok: false, status: 403 });
  });

  it('with readNeedsToken a read needs a read or push token; refused reads are 400', () => {
    expect(authorize(closed, undefined, 'read')).toMatchObject({
      ok: false,
      status: READ_REFUSED_STATUS,
      message: /needs a read token/,
    });
    expect(authorize(closed, 'Bearer nope', 'read')).toMatchObject({ ok: false, status: 400 });
    expect(authorize(closed, 'Bearer R', 'read')).toEqual({ ok: true, token: 'reader' });
    expect(authorize(closed, 'Bearer P', 'read')).toEqual({ ok: true, token: 'ci' });
  });
});
