// The `pcr` command: a noun-verb dispatcher (`pcr node start`, `pcr kv get`, `pcr operator raft
// list-peers`, `pcr maelstrom`). Each noun lives in its own module under node/cli/
// and registers its commands on the program; adding one is one entry in NOUNS. A noun's module is
// loaded only when it is the command being run (or when all are listed, for help and errors), so
// `pcr maelstrom` does not pay for libp2p. Exit codes: 0 success, 1 the command failed, 2 wrong
// usage (the message says what was wrong); client commands add their own (node/cli/client.ts).

// First: Node 20 lacks Promise.withResolvers, which libp2p 3 uses (node/polyfill.ts).
import '../polyfill.ts';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { PCR_VERSION } from '../version.ts';
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
  {
    names: ['deploy'],
    load: async () => (await import('./deploy_cmds.ts')).registerDeployCommands,
  },
  { names: ['maelstrom'], load: async () => (await import('./maelstrom.ts')).register },
  { names: ['top'], load: async () => (await import('./top.ts')).register },
  { names: ['completion'], load: async () => (await import('./completion.ts')).register },
];

/** The program with the commands of `nouns` registered. */
export async function buildProgram(
  ctx: CliContext,
  nouns: readonly Noun[] = NOUNS,
): Promise<Command> {
  const program = new Command('pcr')
    .description('Procurator: a Nix-native microVM orchestrator with no master')
    .version(PCR_VERSION, '-V, --version', 'print the version')
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

/** A user error a command throws: its exit code, code and hint (node/cli/client.ts CliError). */
interface UserError {
  readonly message: string;
  readonly exitCode: number;
  readonly code?: string;
  readonly hint?: string;
}

function userError(e: unknown): UserError | undefined {
  if (!(e instanceof Error)) return undefined;
  const x = e as Error & { exitCode?: unknown; code?: unknown; hint?: unknown };
  if (typeof x.exitCode !== 'number' || !Number.isSafeInteger(x.exitCode)) return undefined;
  return {
    message: x.message,
    exitCode: x.exitCode,
    ...(typeof x.code === 'string' ? { code: x.code } : {}),
    ...(typeof x.hint === 'string' ? { hint: x.hint } : {}),
  };
}

/**
 * Prints a user error: one line and a hint on stderr, or with --json one object on stdout
 * (`{"error":{"code","message","hint"}}`); never a stack trace (PCR_DEBUG=1 adds it on stderr).
 */
function report(io: CliIo, json: boolean, u: UserError, e: unknown): void {
  if (json) {
    const error = {
      code: u.code ?? 'FAILED',
      message: u.message,
      exitCode: u.exitCode,
      ...(u.hint !== undefined ? { hint: u.hint } : {}),
    };
    io.out(`${JSON.stringify({ error })}\n`);
  } else {
    io.err(`pcr: ${u.message}\n${u.hint !== undefined ? `hint: ${u.hint}\n` : ''}`);
  }
  if (process.env.PCR_DEBUG === '1' && e instanceof Error) io.err(`${e.stack ?? ''}\n`);
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
  const json = args.includes('--json');
  const ctx: CliContext = {
    io,
    argv: args,
    exitCode: 0,
    fullProgram: () => buildProgram({ io, argv: args, exitCode: 0 }),
  };
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
      if (json) {
        const message = e.message.replace(/^error: /, '');
        report(
          io,
          true,
          { message, exitCode: EXIT_USAGE, code: 'USAGE', hint: 'add --help for usage' },
          e,
        );
      }
      return EXIT_USAGE;
    }
    const u = userError(e);
    if (u === undefined) throw e;
    report(io, json, u, e);
    return u.exitCode;
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
