// The Store helpers on their own: closureOf's bound on the paths of one walk.

import { describe, expect, it } from 'vitest';
import { CLOSURE_PATHS_MAX, closureOf, type PathInfo, type Store } from './store.ts';

/** A store holding a root that refers to `leaves` paths directly; only `info` is needed. */
function wideStore(leaves: number): { root: string; store: Store } {
  const infos = new Map<string, PathInfo>();
  const leaf = (i: number) => `/nix/store/${String(i).padStart(32, '0')}-leaf`;
  const root = `/nix/store/${'r'.repeat(32)}-root`;
  const refs = Array.from({ length: leaves }, (_, i) => leaf(i));
  for (const p of refs)
    infos.set(p, { path: p, narHash: '', narSize: 0, references: [], sigs: [] });
  infos.set(root, { path: root, narHash: '', narSize: 0, references: refs, sigs: [] });
  const store = {
    info: async (paths: readonly string[]) =>
      new Map(paths.flatMap((p) => (infos.has(p) ? [[p, infos.get(p)!] as const] : []))),
  } as unknown as Store;
  return { root, store };
}

describe('closureOf', () => {
  it(`walks a closure of exactly CLOSURE_PATHS_MAX (${CLOSURE_PATHS_MAX}) paths`, async () => {
    const { root, store } = wideStore(CLOSURE_PATHS_MAX - 1);
    const closure = await closureOf(store, [root]);
    expect(closure).toHaveLength(CLOSURE_PATHS_MAX);
    expect(closure.at(-1)?.path).toBe(root);
  });

  it('refuses one path more with TOO_LARGE', async () => {
    const { root, store } = wideStore(CLOSURE_PATHS_MAX);
    await expect(closureOf(store, [root])).rejects.toMatchObject({
      code: 'TOO_LARGE',
      message: expect.stringMatching(/exceeds 100000 paths/),
    });
  });
});
