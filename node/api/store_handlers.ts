// store.*: what this node's store holds, where a path is, fetching and pushing closures. Errors of
// the store (typed by code) become API error codes here.

import { apiCodeOfStoreError } from '../store/service.ts';
import type { ApiDeps } from './deps.ts';
import { resolveNode } from './deps.ts';
import type { StoreRequest } from './requests.ts';
import { handleTokenRequest, isTokenRequest } from './token_handlers.ts';
import { type ApiResponse, apiError, apiRequest } from './wire.ts';

/** A member asked to fetch a closure (store push) gets this long. */
export const STORE_FETCH_TIMEOUT_MS = 3_600_000;

export function handleStoreRequest(deps: ApiDeps, req: StoreRequest): Promise<ApiResponse> {
  if (isTokenRequest(req)) return handleTokenRequest(deps, req);
  return handleStore(deps, req).catch((e: Error) => {
    const code = (e as { code?: string }).code;
    return apiError(apiCodeOfStoreError(e), `${code !== undefined ? `${code}: ` : ''}${e.message}`);
  });
}

async function handleStore(deps: ApiDeps, req: StoreRequest): Promise<ApiResponse> {
  const store = deps.store();
  if (store === undefined) return apiError('UNAVAILABLE', 'the store is not started yet');
  switch (req.op) {
    case 'store.info': {
      const info = await store.info(req.path);
      if (info !== undefined) return { ok: true, here: true, info };
      return { ok: true, here: false, ...(await store.where(req.path)) };
    }
    case 'store.where':
      return { ok: true, ...(await store.where(req.path)) };
    case 'store.verify':
      return { ok: true, ...(await store.verify(req.repair === true)) };
    case 'store.gc':
      return {
        ok: true,
        ...(await store.gc({
          ...(req.maxFreedBytes !== undefined ? { maxFreedBytes: req.maxFreedBytes } : {}),
          dryRun: req.dryRun === true,
        })),
      };
    case 'store.fetch': {
      const id = req.progressId;
      try {
        const report = await store.fetch(req.path, (p) => {
          if (id !== undefined) deps.fetchProgress.set(id, p);
        });
        return { ok: true, ...report };
      } finally {
        if (id !== undefined) deps.fetchProgress.delete(id);
      }
    }
    case 'store.progress': {
      const p = req.progressId !== undefined ? deps.fetchProgress.get(req.progressId) : undefined;
      return { ok: true, ...(p !== undefined ? { progress: p } : {}) };
    }
    case 'store.push': {
      const imported = await store.importFromNix(req.path);
      const replicated: string[] = [];
      const failed: Record<string, string> = {};
      for (const target of req.to ?? []) {
        const id = resolveNode(deps, target);
        if (typeof id !== 'string') return id;
        if (id === deps.id) continue;
        const r = await apiRequest(
          deps.host,
          deps.addrsOf(id),
          { op: 'store.fetch', path: req.path },
          STORE_FETCH_TIMEOUT_MS,
        ).catch((e: Error) => apiError('UNAVAILABLE', e.message));
        if (r.ok) replicated.push(id);
        else failed[id] = r.error.message;
      }
      return { ok: true, imported, replicated, failed };
    }
    default:
      return { ok: true, ...(await store.stats()) };
  }
}
