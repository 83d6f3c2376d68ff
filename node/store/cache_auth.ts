// Who may use a node's HTTP binary cache: the credential of a request (HTTP basic, as Nix sends
// it from a netrc file, with the token as the password; or `Authorization: Bearer <token>`),
// looked up by its sha256 in the replicated token table (node/state/tokens.ts) and checked
// against the scope the request needs. Uploads always need a `push` token; reads need a `read`
// token only when the node is started with `--cache-auth read`. A push token may read too (`nix
// copy --to` asks the narinfo before it uploads). Pure: the table is injected.

import { createHash } from 'node:crypto';

export type CacheScope = 'read' | 'push';
export const CACHE_SCOPES: readonly CacheScope[] = ['read', 'push'];

/** What the cache needs of a token: its name (for counting) and its scopes. */
export interface CacheToken {
  readonly name: string;
  readonly scopes: readonly CacheScope[];
}

export interface CacheAuth {
  /** The token whose sha256 (hex) this is, or undefined (never created, or revoked). */
  lookup(sha256Hex: string): CacheToken | undefined;
  /** Reads need a token (`--cache-auth read`); default false: reads are open, as before. */
  readonly readNeedsToken: boolean;
}

/**
 * The status of a refused read. Not 401 or 403: Nix (2.8) takes either on a narinfo for "not in
 * this cache", prints nothing, and remembers that for narinfo-cache-negative-ttl (an hour), so a
 * missing netrc entry would look like an empty cache for an hour after it is fixed. A 400 Nix
 * reports ("HTTP error 400") and does not remember (docs/decisions.md D-record on cache tokens).
 */
export const READ_REFUSED_STATUS = 400;

/** An Authorization header longer than this is refused without parsing it. */
export const AUTH_HEADER_BYTES_MAX = 4096;

export type AuthDecision =
  | { readonly ok: true; readonly token?: string }
  | { readonly ok: false; readonly status: 400 | 401 | 403; readonly message: string };

/** The hex sha256 of a token: what the state stores and what a request's token is looked up by. */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The token a request carries: the password of HTTP basic, or a bearer token. */
export function credentialOf(header: string | undefined): string | undefined {
  if (header === undefined || header.length > AUTH_HEADER_BYTES_MAX) return undefined;
  const m = /^(Basic|Bearer)\s+(\S+)\s*$/i.exec(header);
  if (m === null) return undefined;
  if (m[1]!.toLowerCase() === 'bearer') return m[2];
  const plain = Buffer.from(m[2]!, 'base64').toString('utf8');
  const colon = plain.indexOf(':');
  return colon < 0 ? undefined : plain.slice(colon + 1);
}

/** Whether a request with this Authorization header may do what `scope` covers. */
export function authorize(
  auth: CacheAuth | undefined,
  header: string | undefined,
  scope: CacheScope,
): AuthDecision {
  const d = decide(auth, header, scope);
  return !d.ok && scope === 'read' ? { ...d, status: READ_REFUSED_STATUS } : d;
}

function decide(
  auth: CacheAuth | undefined,
  header: string | undefined,
  scope: CacheScope,
): AuthDecision {
  if (scope === 'read' && (auth === undefined || !auth.readNeedsToken)) return { ok: true };
  if (auth === undefined) {
    return {
      ok: false,
      status: 403,
      message: 'this cache takes no uploads (no token table); push with pcr store push\n',
    };
  }
  const token = credentialOf(header);
  if (token === undefined) {
    return {
      ok: false,
      status: 401,
      message: `this cache needs a ${scope} token: create one with pcr store token create --name NAME${scope === 'push' ? ' --push' : ''} and give it to Nix as the password of a netrc-file entry for this host\n`,
    };
  }
  const t = auth.lookup(tokenHash(token));
  if (t === undefined) {
    return {
      ok: false,
      status: 401,
      message: 'this token is unknown or was revoked (pcr store token list)\n',
    };
  }
  if (!t.scopes.includes(scope) && !(scope === 'read' && t.scopes.includes('push'))) {
    return {
      ok: false,
      status: 403,
      message: `token ${t.name} may ${t.scopes.join(' and ')}, not ${scope}: create a token with ${scope === 'push' ? '--push' : '--read'}\n`,
    };
  }
  return { ok: true, token: t.name };
}
