// store.token.*: the binary cache's tokens. Create and revoke go through Raft (the token table,
// node/state/tokens.ts); list reads the table and adds the uses this member counted (uses are
// per node, not replicated). The secret never reaches the member: `pcr` sends its sha256 only,
// and no answer carries a hash.

import type { TokenEntry } from '../state/tokens.ts';
import { type ApiDeps, answer } from './deps.ts';
import type { StoreRequest } from './requests.ts';
import type { ApiResponse } from './wire.ts';

type TokenRequest = Extract<StoreRequest, { op: `store.token.${string}` }>;

/** A token as clients see it: no hash. */
function view(t: TokenEntry, uses?: number): Record<string, unknown> {
  return {
    name: t.name,
    scopes: t.scopes,
    createdAtMs: t.createdAtMs,
    revision: t.revision,
    ...(uses !== undefined ? { uses } : {}),
  };
}

export function isTokenRequest(req: StoreRequest): req is TokenRequest {
  return req.op.startsWith('store.token.');
}

export async function handleTokenRequest(deps: ApiDeps, req: TokenRequest): Promise<ApiResponse> {
  switch (req.op) {
    case 'store.token.create': {
      const r = answer(
        await deps.submit({
          op: 'token.put',
          name: req.name,
          sha256: req.sha256,
          scopes: req.scopes,
          atMs: Date.now(),
        }),
      );
      return r.ok ? { ok: true, index: r.index, token: view(r.token as TokenEntry) } : r;
    }
    case 'store.token.revoke': {
      const r = answer(await deps.submit({ op: 'token.rm', name: req.name }));
      return r.ok ? { ok: true, index: r.index, token: view(r.token as TokenEntry) } : r;
    }
    case 'store.token.list': {
      const r = answer(await deps.read({ op: 'token.list' }, false));
      if (!r.ok) return r;
      const uses = deps.store()?.tokenUses;
      return {
        ok: true,
        node: deps.id,
        tokens: (r.tokens as TokenEntry[]).map((t) => view(t, uses?.get(t.name) ?? 0)),
      };
    }
  }
}
