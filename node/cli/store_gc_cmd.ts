// `pcr store gc [--max-freed SIZE] [--dry-run]`: frees what no VM on the member needs from its
// node-local store, least recently used first, as `nix-collect-garbage --max-freed` does for Nix.

import type { Command } from 'commander';
import { CliError, type ConnectOptions, call, EXIT, print } from './client.ts';
import { withConnect } from './cluster_cmds.ts';

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** `1000`, `500M`, `2G` (powers of 1024, as Nix's --max-freed) as bytes. */
export function parseSize(s: string): number {
  const m = /^([0-9]{1,15})([KMGT]?)(i?B)?$/i.exec(s.trim());
  const n = m === null ? Number.NaN : Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new CliError(
      `--max-freed ${JSON.stringify(s)}: a size like 500M or 2G`,
      EXIT.badArgument,
    );
  }
  return n;
}

type Opts = ConnectOptions & { maxFreed?: string; dryRun?: boolean };

export function registerGcCommand(store: Command): void {
  withConnect(
    store
      .command('gc')
      .description('free what no VM on the member needs from its node-local store (LRU first)'),
  )
    .option('--max-freed <size>', 'stop once this much is freed (500M, 2G)')
    .option('--dry-run', 'only list what would be freed')
    .action(async (o: Opts) => {
      const r = await call(o, {
        op: 'store.gc',
        ...(o.maxFreed !== undefined ? { maxFreedBytes: parseSize(o.maxFreed) } : {}),
        dryRun: o.dryRun === true,
      });
      const paths = r.paths as string[];
      const mib = (Number(r.bytes) / 2 ** 20).toFixed(1);
      print(o, r, () =>
        [
          ...paths,
          `${o.dryRun === true ? 'would free' : 'freed'} ${paths.length} paths, ${mib} MiB`,
        ].join('\n'),
      );
    });
}
