// The Nix CLI as `pcr deploy` uses it on the machine that deploys (never on the cluster): run a
// `nix` command and get its output, or a NixCliError carrying Nix's own error text; and the
// closure of store paths from `nix path-info --json -r`. The commands themselves (eval, flake
// metadata, build) are chosen in flake.ts.

import { nixPathInfoEntries } from '../store/nix_json.ts';
import type { ClosurePathInfo } from './diff.ts';

/** Nix's stderr kept in an error (the end of it: where Nix says what went wrong). */
export const NIX_ERROR_CHARS_MAX = 4000;

export class NixCliError extends Error {
  /** Nix's own error text (the end of its stderr). */
  readonly nixText: string;
  constructor(message: string, nixText: string) {
    super(message);
    this.nixText = nixText;
  }
}

/** Runs `nix` (or `program`, another Nix tool) and returns its stdout; else a NixCliError. */
export type NixRunner = (args: readonly string[], program?: 'nix' | 'nix-store') => Promise<string>;

/** The real Nix CLI; `env` for tests (nixEnv()), else the caller's environment. */
export function nixRunner(env?: NodeJS.ProcessEnv): NixRunner {
  return async (args, program = 'nix') => {
    const { execa } = await import('execa');
    // Flakes and the new CLI, whatever the user's nix.conf says (they are experimental in 2.8).
    const features =
      program === 'nix' ? ['--extra-experimental-features', 'nix-command flakes'] : [];
    const r = await execa(program, [...features, ...args], {
      env: env ?? process.env,
      reject: false,
      maxBuffer: 1 << 28,
      stdin: 'ignore',
    });
    if (r.failed && r.exitCode === undefined) {
      throw new NixCliError(`cannot run ${program}: ${r.shortMessage ?? 'not found'}`, '');
    }
    if (r.exitCode !== 0) {
      const text = String(r.stderr).trim().slice(-NIX_ERROR_CHARS_MAX);
      throw new NixCliError(
        `${program} ${args.slice(0, 2).join(' ')} failed (exit ${r.exitCode})`,
        text,
      );
    }
    return String(r.stdout);
  };
}

/**
 * Parses `nix path-info --json` output (either of Nix's shapes: nixPathInfoEntries). A path Nix
 * says is not valid is refused.
 */
export function parsePathInfos(json: string): ClosurePathInfo[] {
  const out: ClosurePathInfo[] = [];
  for (const j of nixPathInfoEntries(json)) {
    if (j.valid === false) throw new NixCliError(`${j.path} is not in the local Nix store`, '');
    const refs = Array.isArray(j.references) ? j.references.map(String) : [];
    out.push({ path: j.path, narSize: Number(j.narSize ?? 0), references: refs });
  }
  return out;
}

/** The closure of `paths` in the local Nix store, with each path's references and NAR size. */
export async function localClosure(
  nix: NixRunner,
  paths: readonly string[],
): Promise<ClosurePathInfo[]> {
  return parsePathInfos(await nix(['path-info', '--json', '--recursive', ...paths]));
}
