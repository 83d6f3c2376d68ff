// Replacing a small file of the data dir whole: written to `PATH.tmp`, then renamed over PATH, so
// that a reader (or a restart after a crash of this process) finds the old content or the new,
// never a part. Used for node.json, join-seeds.json, addresses.json and the VM records. Not for
// node/store/, whose files have a crash contract of their own.
//
// Without `fsync` the new content survives a crash of the process but not necessarily of the
// machine: after a power loss PATH may hold the old content (or, on some file systems, be empty).
// With it, the data is synced before the rename and the directory after it.
//
// One writer per PATH at a time (the callers serialize theirs): two at once share the temporary
// file.
//
// Below them, the primitives they are made of, shared with node/store/ (whose commit has its own
// order of writes and renames, docs/store.md): writeFileSynced, syncPath, readIfExists.

import { link, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** The temporary file's name beside the target (a crash may leave it; the next write replaces it). */
export const ATOMIC_TEMP_SUFFIX = '.tmp';

export interface WriteFileAtomicOptions {
  /** The new file's mode (before the umask), as writeFile's; default 0o666. */
  readonly mode?: number;
  /** Sync the data before the rename and the directory after it: the write survives a power loss. */
  readonly fsync?: boolean;
}

/**
 * Replaces `path` with `data`. On failure the temporary file is removed, `path` is as it was, and
 * the error is thrown.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  o: WriteFileAtomicOptions = {},
): Promise<void> {
  const tmp = `${path}${ATOMIC_TEMP_SUFFIX}`;
  try {
    // A temporary file left by a crash would keep its own mode: start from none.
    await rm(tmp, { force: true });
    if (o.fsync === true) await writeFileSynced(tmp, data, { mode: o.mode ?? 0o666, fsync: true });
    else await writeFile(tmp, data, { mode: o.mode ?? 0o666 });
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
  if (o.fsync === true) await syncPath(dirname(path));
}

/**
 * Creates `path` with `data`, synced, and fails with EEXIST if it exists (as `writeFile` with
 * flag 'wx'), but never leaves a part of the data at `path`: the data is written and synced
 * under the temporary name, then hard-linked to `path` (which fails if `path` exists) and the
 * directory synced. For files that must never be half there and never be replaced: the node's
 * key and the cluster secret (node/identity.ts), whose partial copy after a crash failed every
 * later start.
 */
export async function createFileAtomic(
  path: string,
  data: string | Uint8Array,
  o: { readonly mode?: number } = {},
): Promise<void> {
  const tmp = `${path}${ATOMIC_TEMP_SUFFIX}`;
  try {
    await rm(tmp, { force: true });
    await writeFileSynced(tmp, data, { mode: o.mode ?? 0o666, fsync: true });
    await link(tmp, path);
  } finally {
    await rm(tmp, { force: true }).catch(() => undefined);
  }
  await syncPath(dirname(path));
}

/** Writes `path` (created or truncated) and, with `fsync`, syncs it before closing. */
export async function writeFileSynced(
  path: string,
  data: string | Uint8Array,
  o: { readonly mode: number; readonly fsync: boolean },
): Promise<void> {
  const fh = await open(path, 'w', o.mode);
  try {
    await fh.writeFile(data);
    if (o.fsync) await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Syncs a file, or a directory (which makes the renames and links in it durable). */
export async function syncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The file's bytes, or undefined when it does not exist (other errors are thrown). */
export async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
