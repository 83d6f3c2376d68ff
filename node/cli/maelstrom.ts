// `pcr maelstrom`: runs this process as one node of a Maelstrom test (workload lin-kv): Maelstrom's
// JSON messages on stdin and stdout, logs on stderr. See docs/maelstrom.md.

import type { Command } from 'commander';
import { type CliContext, EXIT_OK, integerOption } from './context.ts';

interface MaelstromCliOptions {
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  requestTimeoutMs: number;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('maelstrom')
    .summary('serve the Maelstrom node protocol (lin-kv) on stdin/stdout')
    .description(
      'Runs one Maelstrom node: a real Raft node and state machine serving the lin-kv workload ' +
        '(read, write, cas). Maelstrom messages are read from stdin and written to stdout, one ' +
        'JSON object per line; logs go to stderr. For Maelstrom, use bin/pcr-maelstrom as --bin.',
    )
    .option('--tick-ms <ms>', 'Raft tick interval', integerOption(1, 10_000), 20)
    .option('--election-ticks <n>', 'election timeout, in ticks', integerOption(2, 10_000), 10)
    .option('--heartbeat-ticks <n>', 'heartbeat interval, in ticks', integerOption(1, 10_000), 2)
    .option(
      '--request-timeout-ms <ms>',
      'answer a request not done by then with error 0 (Maelstrom clients wait 1000 ms)',
      integerOption(1, 600_000),
      800,
    )
    .action(async (opts: MaelstromCliOptions) => {
      // Loaded on use, so that other `pcr` commands do not load the Maelstrom node.
      const { serveStdio } = await import('../maelstrom/stdio.ts');
      await serveStdio(opts);
      ctx.exitCode = EXIT_OK;
    });
}
