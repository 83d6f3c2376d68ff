// The seeds a joining node was started with, kept in its data dir (JOIN_SEEDS_FILE). A data dir
// with no Raft log is "fresh", and a fresh node started without `--seed` bootstraps a new cluster
// of one; without this file a node stopped before its join brought it a single entry (its seed
// was down, or it was stopped at once) and started again without `--seed` would do exactly that:
// a second cluster holding the first one's secret. With the file it joins through the kept seeds.
// A node with a log never reads the file (its members are in its log and address book).

import { join } from 'node:path';
import { readIfExists, writeFileAtomic } from './atomic_file.ts';
import { JOIN_SEEDS_FILE } from './data_dir_files.ts';

/** Seeds kept at most (the CLI takes a handful; a hand-edited file is cut here). */
export const JOIN_SEEDS_MAX = 64;

/**
 * Keeps `seeds` for later starts of a node that has no log yet, replaced whole and synced: a
 * machine that lost power right after the first start must still find them, or its next start
 * without `--seed` bootstraps the second cluster this file exists to prevent.
 */
export async function keepJoinSeeds(dataDir: string, seeds: readonly string[]): Promise<void> {
  await writeFileAtomic(
    join(dataDir, JOIN_SEEDS_FILE),
    `${JSON.stringify({ seeds: seeds.slice(0, JOIN_SEEDS_MAX) })}\n`,
    { mode: 0o600, fsync: true },
  );
}

/**
 * The kept seeds, or [] when there is no file. A file that cannot be read as seeds is an error
 * that names it: starting a new cluster instead would be the very mistake the file prevents.
 */
export async function keptJoinSeeds(dataDir: string): Promise<string[]> {
  const path = join(dataDir, JOIN_SEEDS_FILE);
  const bytes = await readIfExists(path);
  if (bytes === undefined) return [];
  let seeds: unknown;
  try {
    seeds = (JSON.parse(bytes.toString('utf8')) as { seeds?: unknown }).seeds;
  } catch {
    seeds = undefined;
  }
  if (!Array.isArray(seeds) || !seeds.every((s) => typeof s === 'string')) {
    throw new Error(
      `${path} is not a list of seeds: give --seed, or remove the file (and the data dir) to start a new cluster`,
    );
  }
  return seeds.slice(0, JOIN_SEEDS_MAX);
}
