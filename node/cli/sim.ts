// `pcr sim ...`: the deterministic cluster simulator (sim/cli.ts). Every argument after `sim` is
// handed to the simulator unparsed, its own --help included; `pcr` exits with the code it returns.

import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { type CliContext, EXIT_FAILURE } from './context.ts';

/**
 * The simulator's entry point: `main(argv)` resolves to the exit code. Its optional third
 * argument names the command in the replay lines it prints (`pcr sim` here).
 */
export type SimMain = (argv: string[], io?: undefined, program?: string) => Promise<number>;

/** Where the simulator lives; a variable, so that the type check does not need the file. */
const SIM_MODULE = '../../sim/cli.ts';

/** Loads sim/cli.ts, or says why it cannot (missing file, no `main` export). */
export async function loadSimMain(specifier: string = SIM_MODULE): Promise<SimMain | string> {
  const url = new URL(specifier, import.meta.url);
  const path = fileURLToPath(url);
  let mod: { main?: unknown };
  try {
    mod = (await import(url.href)) as { main?: unknown };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    // Only the simulator's own absence is "not available"; a broken import inside it is a bug.
    if (err.code === 'ERR_MODULE_NOT_FOUND' && err.message.includes(path)) {
      return `the simulator is not available in this build (${path} is missing)`;
    }
    throw e;
  }
  if (typeof mod.main !== 'function') {
    return `${path} does not export main(argv): Promise<number>`;
  }
  return mod.main as SimMain;
}

/**
 * The arguments after `sim`, exactly as given. Commander's cmd.args holds the operands and the
 * unknown options in order but drops a leading `--`; the arguments of `pcr` keep it.
 */
function simArgs(ctx: CliContext, cmd: Command): string[] {
  return ctx.argv[0] === cmd.name() ? ctx.argv.slice(1) : [...cmd.args];
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('sim')
    .summary('run the deterministic cluster simulator (pcr sim --help for its options)')
    .description(
      'Runs whole simulated clusters (the real consensus, state machine and node code over a ' +
        'simulated network, disk and clock). Every argument is passed to the simulator.',
    )
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .passThroughOptions()
    .argument('[args...]', 'arguments of the simulator')
    .action(async (_args: string[], _opts: unknown, cmd: Command) => {
      const main = await (ctx.loadSim ?? loadSimMain)();
      if (typeof main === 'string') {
        ctx.io.err(`pcr sim: ${main}\n`);
        ctx.exitCode = EXIT_FAILURE;
        return;
      }
      ctx.exitCode = await main(simArgs(ctx, cmd), undefined, 'pcr sim');
    });
}
