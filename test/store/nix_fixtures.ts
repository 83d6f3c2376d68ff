// Test and bench helpers that make real store paths with the real Nix, offline (no nixpkgs):
// derivations with /bin/sh as builder referring to each other, and builtins.toFile for many small
// paths. Not used by the product.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { nixEnv } from '../tools.ts';

/** A closure of four paths with references, a directory, an executable, a symlink and a CA text. */
export const CLOSURE_EXPR = `
let
  salt = "SALT";
  a = builtins.toFile "pcr-a-\${salt}.txt" "hello from a \${salt}\\n";
  b = derivation {
    name = "pcr-b-\${salt}"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "echo \${a} > $out" ];
  };
  c = derivation {
    name = "pcr-c-\${salt}"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" ''
      /bin/mkdir -p $out/sub/deeper $out/bin
      echo \${b} > $out/sub/ref
      printf 'x%.0s' $(/usr/bin/seq 1 1000) > $out/sub/deeper/k
      : > $out/empty
      echo '#!/bin/sh' > $out/bin/run; /bin/chmod +x $out/bin/run
      /bin/ln -s \${b} $out/link
      /bin/ln -s sub/ref $out/rel
    '' ];
  };
  d = derivation {
    name = "pcr-d-\${salt}"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "echo \${c} \${a} > $out" ];
  };
in d
`;

/** Builds `expr` (with SALT replaced, so each test gets fresh paths) and returns the out path. */
export async function nixBuild(dir: string, expr: string, salt: string): Promise<string> {
  const file = join(dir, `expr-${salt}.nix`);
  await writeFile(file, expr.replaceAll('SALT', salt));
  const r = await execa('nix-build', [file, '--no-out-link'], { env: nixEnv() });
  return r.stdout.trim();
}

/** Evaluates `expr` (a builtins.toFile path: no build) and returns the store path it made. */
export async function nixEvalPath(dir: string, expr: string, salt: string): Promise<string> {
  const file = join(dir, `expr-${salt}.nix`);
  await writeFile(file, expr.replaceAll('SALT', salt));
  const r = await execa('nix', ['eval', '--raw', '--file', file], { env: nixEnv() });
  return r.stdout.trim();
}

/** The closure of `path`, as nix lists it. */
export async function nixClosure(path: string, store?: string): Promise<string[]> {
  const args = ['-qR', path];
  if (store !== undefined) args.unshift('--store', store);
  const r = await execa('nix-store', args, { env: nixEnv() });
  return r.stdout.split('\n').filter((l) => l !== '');
}

/** `count` small paths made with builtins.toFile, plus a root that refers to them all (eval it). */
export function manySmallPathsExpr(count: number, bytes: number): string {
  return `
let
  salt = "SALT";
  pad = builtins.concatStringsSep "" (builtins.genList (_: "x") ${bytes});
  files = builtins.genList (i: builtins.toFile "pcr-small-\${salt}-\${toString i}" "\${toString i} \${pad}") ${count};
in builtins.toFile "pcr-root-\${salt}" (builtins.concatStringsSep "\\n" files)
`;
}

/** One path of `mib` MiB of random bytes. */
export function bigPathExpr(mib: number): string {
  return `derivation {
    name = "pcr-big-SALT"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "/usr/bin/head -c ${mib}M /dev/urandom > $out" ];
  }`;
}
