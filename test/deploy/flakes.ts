// Test flakes for `pcr deploy` that need no nixpkgs and no network: no inputs, derivations with
// /bin/sh as builder. `deployFlake` writes one into a fresh directory; with `git: true` it is a
// committed git repository (so `nix flake metadata` has a rev). Not used by the product.

import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

export interface TestFlake {
  /** The body of the `procurator.deployments` attribute set (Nix). */
  readonly deployments?: string;
  /** Replaces the outputs' attribute set whole (Nix), for flakes without deployments. */
  readonly outputs?: string;
  /** Make it a git repository with one commit. */
  readonly git?: boolean;
  /** The runner's builder script (default: a bin/microvm-run that refers to a library path). */
  readonly runnerScript?: string;
}

/**
 * `lib` and `runner` are in scope of `deployments`: runner-SALT depends on lib-SALT (a reference),
 * SALT unique per flake, so a test can tell whether they were built.
 */
export async function writeTestFlake(t: TestFlake): Promise<{ dir: string; salt: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'pcr-deploy-flake-'));
  const salt = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  const script =
    t.runnerScript ??
    `/bin/mkdir -p $out/bin && printf "#!/bin/sh\\n# \${lib}\\necho up\\n" > $out/bin/microvm-run && /bin/chmod +x $out/bin/microvm-run`;
  const flake = `{
  outputs = { self }:
    let
      system = "SYSTEM"; # builtins.currentSystem is not there in pure evaluation
      lib = derivation {
        name = "pcr-test-lib-1.0-SALT"; inherit system; builder = "/bin/sh";
        args = [ "-c" "/bin/mkdir $out && echo SALT > $out/lib" ];
      };
      runner = derivation {
        name = "microvm-run-SALT"; inherit system; builder = "/bin/sh";
        args = [ "-c" ''${script}'' ];
      };
    in ${t.outputs ?? `{ procurator.deployments = { ${t.deployments ?? ''} }; }`};
}
`
    .replaceAll('SALT', salt)
    .replaceAll('SYSTEM', `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux`);
  await writeFile(join(dir, 'flake.nix'), flake);
  if (t.git === true) {
    const git = (...args: string[]) => execa('git', args, { cwd: dir });
    await git('init', '-q');
    await git('add', 'flake.nix');
    await git('-c', 'user.email=t@example.org', '-c', 'user.name=t', 'commit', '-qm', 'test flake');
  }
  return { dir, salt };
}

/** A valid deployment `web` whose runner is the flake's `runner` (as a string with context). */
export const WEB = `web = {
  spec = { version = 1; runner = "\${runner}"; memoryMiB = 64; count = 2; };
  update = { maxParallel = 1; };
};`;

/**
 * A runner script for `writeTestFlake`: a labelled stand-in for a hypervisor (cloud-hypervisor and
 * firecracker cannot run here, and what is under test is the orchestration): its bin/microvm-run
 * prints `line` with its library's path (so the closure has a reference) and sleeps.
 */
export const standInRunnerScript = (line: string): string =>
  `/bin/mkdir -p $out/bin && printf "#!/bin/sh\\necho ${line} \${lib}\\nexec /bin/sleep 600\\n" > $out/bin/microvm-run && /bin/chmod +x $out/bin/microvm-run`;
