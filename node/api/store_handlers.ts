// store.*: what this node's store holds, where a path is, fetching and pushing closures. Errors of
// the store (typed by code) become API error codes here.

import type { ApiDeps } from './router.ts';
import { resolveNode } from './router.ts';
import { type ApiRequest, type ApiResponse, apiError, apiRequest } from './wire.ts';

/** A member asked to fetch a closure (store push) gets this long. */
export const STORE_FETCH_TIMEOUT_MS = 3_600_000;

export function handleStoreRequest(deps: ApiDeps, req: ApiRequest): Promise<ApiResponse> {
  return handleStore(deps, req).catch((e: Error) => {
    const code = (e as { code?: string }).code;
    return apiError(
      code === 'NOT_FOUND' || code === 'NO_HOLDER'
        ? 'NOT_FOUND'
        : code === 'BAD_STORE_PATH'
          ? 'INVALID'
          : 'UNAVAILABLE',
      `${code !== undefined ? `${code}: ` : ''}${e.message}`,
    );
  });
}

async function handleStore(deps: ApiDeps, req: ApiRequest): Promise<ApiResponse> {
  const store = deps.store();
  if (store === undefined) return apiError('UNAVAILABLE', 'the store is not started yet');
  const path = req.path;
  if (req.op !== 'store.stats' && req.op !== 'store.progress' && typeof path !== 'string') {
    return apiError('INVALID', `${req.op} needs a store path`);
  }
  switch (req.op) {
    case 'store.info': {
      const info = await store.info(path as string);
      if (info !== undefined) return { ok: true, here: true, info };
      return { ok: true, here: false, holders: await store.where(path as string) };
    }
    case 'store.where':
      return { ok: true, holders: await store.where(path as string) };
    case 'store.fetch': {
      const id = typeof req.progressId === 'string' ? req.progressId : undefined;
      try {
        const report = await store.fetch(path as string, (p) => {
          if (id !== undefined) deps.fetchProgress.set(id, p);
        });
        return { ok: true, ...report };
      } finally {
        if (id !== undefined) deps.fetchProgress.delete(id);
      }
    }
    case 'store.progress': {
      const p =
        typeof req.progressId === 'string' ? deps.fetchProgress.get(req.progressId) : undefined;
      return { ok: true, ...(p !== undefined ? { progress: p } : {}) };
    }
    case 'store.push': {
      const imported = await store.importFromNix(path as string);
      const replicated: string[] = [];
      const failed: Record<string, string> = {};
      for (const target of Array.isArray(req.to) ? req.to : []) {
        const id = resolveNode(deps, target);
        if (typeof id !== 'string') return id;
        if (id === deps.id) continue;
        const r = await apiRequest(
          deps.host,
          deps.addrsOf(id),
          { op: 'store.fetch', path },
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
