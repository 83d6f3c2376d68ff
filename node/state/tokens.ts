// The replicated table of the binary cache's tokens: a name, the sha256 of the secret (the secret
// itself is made by `pcr` on the user's machine and never reaches the cluster, the log or a
// snapshot), the scopes (read, push) and when it was made. Every member's HTTP cache looks a
// request's token up here by its hash (node/store/cache_auth.ts). Pure and deterministic like the
// rest of the state machine: every field comes from a command.
//
// Uses are not replicated: a Raft entry per HTTP request would put the cache's traffic in the log
// (a `nix copy` of 1,000 paths is 2,000+ requests). Each member counts the uses it served, in
// memory, shown by `pcr store token list` (of the member asked) and on /metrics.

/** Tokens the cluster holds at most. */
export const TOKENS_MAX = 1000;
/** Longest token name (a netrc or a CI job names it). */
export const TOKEN_NAME_BYTES_MAX = 63;
export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const TOKEN_SCOPES = ['read', 'push'] as const;
export type TokenScope = (typeof TOKEN_SCOPES)[number];

export interface TokenEntry {
  readonly name: string;
  /** Hex sha256 of the secret. */
  readonly sha256: string;
  /** Sorted, without repeats. */
  readonly scopes: readonly TokenScope[];
  /** The proposer's clock when it was made. */
  readonly createdAtMs: number;
  /** Raft index of the put. */
  readonly revision: number;
}

export type TokenCommand =
  | {
      readonly op: 'token.put';
      readonly name: string;
      readonly sha256: string;
      readonly scopes: readonly TokenScope[];
      readonly atMs: number;
    }
  | { readonly op: 'token.rm'; readonly name: string };

export type TokenQuery = { readonly op: 'token.list' };

export type TokenResult =
  | { ok: true; token?: TokenEntry; tokens?: TokenEntry[] }
  | { ok: false; code: 'notFound' | 'invalid'; message: string };

/** Why `name` is not a usable token name, or undefined. */
export function tokenNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return 'a token name must be a string';
  if (name.length === 0 || name.length > TOKEN_NAME_BYTES_MAX)
    return `a token name has 1 to ${TOKEN_NAME_BYTES_MAX} characters (TOKEN_NAME_BYTES_MAX)`;
  if (!TOKEN_NAME_PATTERN.test(name))
    return "a token name has letters, digits, '.', '_' and '-', and starts with a letter or digit";
  return undefined;
}

function scopesProblem(scopes: unknown): string | undefined {
  if (!Array.isArray(scopes) || scopes.length === 0 || scopes.length > TOKEN_SCOPES.length)
    return 'scopes must list read, push or both';
  if (!scopes.every((s) => TOKEN_SCOPES.includes(s as TokenScope)))
    return 'scopes must list read, push or both';
  if (new Set(scopes).size !== scopes.length) return 'scopes must not repeat';
  return undefined;
}

/** Shape problems of a token command (state-independent), or undefined. */
export function tokenCommandProblem(o: Record<string, unknown>): string | undefined {
  switch (o.op) {
    case 'token.put':
      if (typeof o.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(o.sha256))
        return 'sha256 must be 64 lowercase hex digits';
      if (!Number.isSafeInteger(o.atMs)) return 'atMs must be an integer';
      return tokenNameProblem(o.name) ?? scopesProblem(o.scopes);
    case 'token.rm':
      return tokenNameProblem(o.name);
    default:
      return `unknown command op ${JSON.stringify(o.op)}`;
  }
}

function sortedScopes(scopes: readonly TokenScope[]): TokenScope[] {
  return TOKEN_SCOPES.filter((s) => scopes.includes(s));
}

export class TokenTable {
  private byName = new Map<string, TokenEntry>();
  private bySha = new Map<string, TokenEntry>();

  apply(index: number, c: TokenCommand): TokenResult {
    if (c.op === 'token.rm') {
      const t = this.byName.get(c.name);
      if (t === undefined) return { ok: false, code: 'notFound', message: `no token ${c.name}` };
      this.byName.delete(t.name);
      this.bySha.delete(t.sha256);
      return { ok: true, token: t };
    }
    if (this.byName.has(c.name)) {
      return {
        ok: false,
        code: 'invalid',
        message: `a token named ${c.name} exists: revoke it first (pcr store token revoke ${c.name})`,
      };
    }
    if (this.bySha.has(c.sha256))
      return { ok: false, code: 'invalid', message: 'a token with this secret exists' };
    if (this.byName.size >= TOKENS_MAX) {
      return {
        ok: false,
        code: 'invalid',
        message: `the cluster holds TOKENS_MAX (${TOKENS_MAX}) tokens: revoke unused ones`,
      };
    }
    const t: TokenEntry = {
      name: c.name,
      sha256: c.sha256,
      scopes: sortedScopes(c.scopes),
      createdAtMs: c.atMs,
      revision: index,
    };
    this.byName.set(t.name, t);
    this.bySha.set(t.sha256, t);
    return { ok: true, token: t };
  }

  /** The token whose secret hashes to `sha256` (hex), if it exists (not revoked). */
  byHash(sha256: string): TokenEntry | undefined {
    return this.bySha.get(sha256);
  }

  /** Sorted by name. */
  list(): TokenEntry[] {
    return [...this.byName.values()].sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
  }

  /** Rows for the snapshot, sorted by name. */
  rows(): unknown[] {
    return this.list().map((t) => [t.name, t.sha256, [...t.scopes], t.createdAtMs, t.revision]);
  }

  /** Replaces the table by snapshot rows; throws on a malformed row (nothing changes). */
  restore(rows: unknown): void {
    if (!Array.isArray(rows)) throw new Error('state machine: malformed snapshot token table');
    const byName = new Map<string, TokenEntry>();
    const bySha = new Map<string, TokenEntry>();
    for (const row of rows as unknown[]) {
      const [name, sha256, scopes, createdAtMs, revision] = (Array.isArray(row) ? row : []) as [
        unknown,
        unknown,
        unknown,
        unknown,
        unknown,
      ];
      const problem = tokenCommandProblem({
        op: 'token.put',
        name,
        sha256,
        scopes,
        atMs: createdAtMs,
      });
      if (problem !== undefined || !Number.isSafeInteger(revision)) {
        throw new Error(`state machine: malformed snapshot token row (${problem ?? 'revision'})`);
      }
      const t: TokenEntry = {
        name: name as string,
        sha256: sha256 as string,
        scopes: sortedScopes(scopes as TokenScope[]),
        createdAtMs: createdAtMs as number,
        revision: revision as number,
      };
      byName.set(t.name, t);
      bySha.set(t.sha256, t);
    }
    this.byName = byName;
    this.bySha = bySha;
  }
}
