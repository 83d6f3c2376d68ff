// The `pcr` command: a noun-verb dispatcher (`pcr node start`, `pcr kv get`, `pcr operator raft
// list-peers`, `pcr maelstrom`). Each noun lives in its own module under node/cli/
// and registers its commands on the program; adding one is one entry in NOUNS. A noun's module is
// loaded only when it is the command being run (or when all are listed, for help and errors), so
// `pcr maelstrom` does not pay for libp2p. Exit codes: 0 success, 1 the command failed, 2 wrong
// usage (the message says what was wrong); client commands add their own (node/cli/client.ts).

// First: Node 20 lacks Promise.withResolvers, which libp2p 3 uses (node/polyfill.ts).
import '../polyfill.ts';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { type CliContext, type CliIo, EXIT_USAGE, processIo } from './context.ts';

type Register = (program: Command, ctx: CliContext) => void;

interface Noun {
  /** The top-level commands the module registers. */
  readonly names: readonly string[];
  readonly load: () => Promise<Register>;
}

const NOUNS: readonly Noun[] = [
  {
    names: ['node'],
    load: async () => (await import('./node_cmd.ts')).registerNodeCommands,
  },
  {
    names: ['status', 'members', 'nodes', 'kv', 'operator'],
    load: async () => (await import('./cluster_cmds.ts')).registerClusterCommands,
  },
  { names: ['store'], load: async () => (await import('./store_cmds.ts')).registerStoreCommands },
  { names: ['vm'], load: async () => (await import('./vm_cmds.ts')).registerVmCommands },
  { names: ['maelstrom'], load: async () => (await import('./maelstrom.ts')).register },
];

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version?: unknown;
  };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

/** The program with the commands of `nouns` registered. */
export async function buildProgram(
  ctx: CliContext,
  nouns: readonly Noun[] = NOUNS,
): Promise<Command> {
  const program = new Command('pcr')
    .description('Procurator: a Nix-native microVM orchestrator with no master')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .helpCommand('help [command]', 'show help for a command')
    // Options after a noun belong to that noun.
    .enablePositionalOptions()
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({
      writeOut: (text) => ctx.io.out(text),
      writeErr: (text) => ctx.io.err(text),
    })
    .exitOverride();
  for (const noun of nouns) (await noun.load())(program, ctx);
  return program;
}

/** An error a command throws with the exit code to use (node/cli/client.ts CliError). */
function exitCodeOf(e: unknown): number | undefined {
  if (!(e instanceof Error)) return undefined;
  const code = (e as { exitCode?: unknown }).exitCode;
  return typeof code === 'number' && Number.isSafeInteger(code) ? code : undefined;
}

/**
 * Tools of the repository that are not `pcr` commands (the product imports nothing from them), and
 * what to run instead: a user who types them is told where they are, with the usage exit code.
 */
const NOT_PCR_COMMANDS: ReadonlyMap<string, string> = new Map([
  ['sim', 'the simulator is not a pcr command: run `npm run sim -- --help` in a checkout'],
]);

/** Runs `pcr` with the arguments after the program name; resolves to the exit code. */
export async function main(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  const elsewhere = NOT_PCR_COMMANDS.get((argv[0] === 'help' ? argv[1] : argv[0]) ?? '');
  if (elsewhere !== undefined) {
    io.err(`pcr: ${elsewhere}\n`);
    return EXIT_USAGE;
  }
  const target = NOUNS.find((n) => n.names.includes(argv[0] ?? ''));
  const helpTarget =
    argv[0] === 'help' ? NOUNS.find((n) => n.names.includes(argv[1] ?? '')) : undefined;
  const args = [...argv];
  const ctx: CliContext = { io, argv: args, exitCode: 0 };
  const nouns =
    argv[0] === '--version' || argv[0] === '-V'
      ? []
      : target !== undefined
        ? [target]
        : helpTarget !== undefined
          ? [helpTarget]
          : NOUNS;
  const program = await buildProgram(ctx, nouns);
  try {
    await program.parseAsync(args, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
      // Wrong usage, `pcr` alone (help shown as an error): commander already printed why.
      return EXIT_USAGE;
    }
    const code = exitCodeOf(e);
    if (code === undefined) throw e;
    io.err(`pcr: ${(e as Error).message}\n`);
    return code;
  }
  return ctx.exitCode;
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`pcr: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
