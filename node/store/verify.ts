// A store checks what it serves: every NAR sent (to a peer or to Nix) is hashed as it flows and
// compared with its NarHash at the end; a NAR that no longer matches is quarantined (dropped from
// the store's index: not served, not announced as held) the moment the last byte has gone, so a
// damaged NAR is never served twice. The receiver's own verification refuses the bytes it got.
// `verifyStore` checks a whole store the same way (`pcr store verify`). Repair (refetching from
// the members) is the service's job (service.ts); this module only reads and judges.

import { isStoreError, StoreError } from './errors.ts';
import { Sha256Sink } from './hash.ts';
import type { PathInfo, QuarantinedPath, Store } from './store.ts';

export type { QuarantinedPath } from './store.ts';

/** What differs between a NAR's bytes (their hash and count) and its info, or undefined. */
export function narDamage(
  info: PathInfo,
  got: { hash: string; bytes: number },
): string | undefined {
  if (got.bytes !== info.narSize) {
    return `NAR has ${got.bytes} bytes on disk, its NarSize is ${info.narSize}`;
  }
  if (got.hash !== info.narHash)
    return `NAR hash is ${got.hash} on disk, its NarHash is ${info.narHash}`;
  return undefined;
}

/**
 * Opens the NAR of `info` for serving. Errors of opening (NOT_FOUND; a NAR whose size on disk is
 * wrong, which the store quarantines at once) are thrown here, before any byte, so the caller can
 * answer with an error instead of a truncated NAR. The bytes are hashed as they are consumed; once
 * the last one has been taken and the NAR does not match, the path is quarantined. The consumer
 * gets every byte either way (the receiver verifies and refuses), and no later serve finds it.
 */
export async function openVerifiedNar(
  store: Store,
  info: PathInfo,
): Promise<AsyncIterable<Uint8Array>> {
  const it = store.nar(info.path)[Symbol.asyncIterator]();
  let first: IteratorResult<Uint8Array>;
  try {
    first = await it.next();
  } catch (e) {
    // A path the store lists as valid whose files are gone (a Nix store path removed by hand).
    if (isStoreError(e, 'NOT_FOUND') && (await store.has([info.path])).has(info.path)) {
      await store.quarantine(info.path, 'NAR files are missing (found while serving)');
      throw new StoreError(
        'DAMAGED',
        `${info.path}: this node's copy is damaged (its files are missing) and now quarantined`,
      );
    }
    throw e;
  }
  return (async function* () {
    const sink = new Sha256Sink();
    let r = first;
    try {
      while (r.done !== true) {
        sink.update(r.value);
        yield r.value;
        r = await it.next();
      }
    } finally {
      // A consumer that stops early (the receiver went away) must close the store's file too.
      if (r.done !== true) await it.return?.();
    }
    const damage = narDamage(info, { hash: sink.digest(), bytes: sink.bytes });
    if (damage !== undefined) await store.quarantine(info.path, `${damage} (found while serving)`);
  })();
}

/** Hashes the NAR of `info` as the store holds it; the damage found, or undefined. */
export async function checkNar(store: Store, info: PathInfo): Promise<string | undefined> {
  const sink = new Sha256Sink();
  try {
    for await (const c of store.nar(info.path, { use: false })) sink.update(c);
  } catch (e) {
    if (isStoreError(e, 'NOT_FOUND')) {
      // Evicted meanwhile, or (a Nix store path removed by hand) still listed but gone.
      return (await store.has([info.path])).has(info.path) ? 'NAR files are missing' : undefined;
    }
    // A NAR the store cannot read whole is damaged too (a wrong size is refused at open).
    return isStoreError(e) ? e.message : `NAR cannot be read: ${(e as Error).message}`;
  }
  return narDamage(info, { hash: sink.digest(), bytes: sink.bytes });
}

export interface VerifyReport {
  /** Paths whose NAR was checked. */
  readonly checked: number;
  readonly bytes: number;
  /** Paths found damaged by this run (now quarantined). */
  readonly damaged: QuarantinedPath[];
}

/**
 * Checks every path of `store` (NAR hash and size) one after the other, quarantining the damaged
 * ones. `onPath` is told after each (progress).
 */
export async function verifyStore(
  store: Store,
  onPath?: (checked: number, total: number) => void,
): Promise<VerifyReport> {
  const infos = await store.list();
  const damaged: QuarantinedPath[] = [];
  let checked = 0;
  let bytes = 0;
  for (const info of infos) {
    const damage = await checkNar(store, info);
    checked++;
    bytes += info.narSize;
    if (damage !== undefined) {
      const reason = `${damage} (found by verify)`;
      await store.quarantine(info.path, reason);
      damaged.push({ path: info.path, reason, atMs: Date.now() });
    }
    onPath?.(checked, infos.length);
  }
  return { checked, bytes, damaged };
}
