// System tools that some tests need (nix, qemu-system-x86_64, a kernel, busybox). Locally a test
// whose tool is missing is skipped, and says which tool and how to install it; under CI (CI=true)
// a missing tool is a failure, never a skip (.ci/run installs every one of them).
// A name starting with `$` is a path given by an environment variable (`$PCR_NIXPKGS_LIB`): present
// when the variable names a path that exists.
import { accessSync, constants } from 'node:fs';
import { describe } from 'vitest';
import { which } from '../node/which.ts';

/** The Debian package that provides each tool, for the skip message. */
export const TOOL_PACKAGES: Record<string, string> = {
  nix: 'nix-bin',
  'nix-store': 'nix-bin',
  'nix-instantiate': 'nix-bin',
  'nix-build': 'nix-bin',
  git: 'git',
  python3: 'python3',
  'systemd-analyze': 'systemd',
  'qemu-system-x86_64': 'qemu-system-x86',
  busybox: 'busybox-static',
  cpio: 'cpio',
  etcd: 'etcd-server',
  script: 'bsdutils (util-linux)',
  xz: 'xz-utils',
  zstd: 'zstd',
};

/**
 * What to do when a `$VARIABLE` tool is missing: .ci/run sets each from ../shared when it is there.
 */
export const ENV_TOOL_HINTS: Record<string, string> = {
  $PCR_NIXPKGS_LIB:
    'set PCR_NIXPKGS_LIB to a copy of nixpkgs lib/ (e.g. ../shared/nixpkgs-lib/lib)',
};

/** The nixpkgs lib/ directory for evaluating NixOS modules offline (nix/*.test.ts). */
export const NIXPKGS_LIB_TOOL = '$PCR_NIXPKGS_LIB';

function installHint(missing: readonly string[]): string {
  const env = missing.filter((n) => n.startsWith('$'));
  const apt = missing.filter((n) => !n.startsWith('$')).map((n) => TOOL_PACKAGES[n] ?? n);
  return [
    ...(apt.length > 0 ? [`apt-get install ${apt.join(' ')}`] : []),
    ...env.map((n) => ENV_TOOL_HINTS[n] ?? `set ${n.slice(1)}`),
  ].join('; ');
}

/** The absolute path of an executable on PATH (or an absolute path that exists), else undefined. */
export function findTool(name: string): string | undefined {
  if (name.startsWith('$')) {
    const value = process.env[name.slice(1)];
    return value === undefined || value === '' ? undefined : findTool(value);
  }
  if (!name.startsWith('/')) return which(name);
  try {
    accessSync(name, constants.R_OK);
    return name;
  } catch {
    return undefined;
  }
}

/** Tools from `names` that are missing. Under CI a missing tool throws. */
export function missingTools(names: readonly string[]): string[] {
  const missing = names.filter((n) => findTool(n) === undefined);
  if (missing.length > 0 && process.env.CI === 'true') {
    throw new Error(
      `CI=true and required tools are missing: ${missing.join(', ')} (${installHint(missing)})`,
    );
  }
  return missing;
}

/**
 * `describe` that runs only when every tool is present. Locally it skips with a message naming
 * the missing tools; under CI it fails at collection time.
 */
export function describeWithTools(tools: readonly string[], name: string, body: () => void): void {
  const missing = missingTools(tools);
  if (missing.length === 0) {
    describe(name, body);
    return;
  }
  describe.skip(`${name} [skipped: missing ${missing.join(', ')}; ${installHint(missing)}]`, body);
}

/**
 * Environment for running the real Nix offline as root in single-user mode: no sandbox, no build
 * users, flakes on, no substituters (the machines here reach no binary cache).
 */
export function nixEnv(extra = ''): NodeJS.ProcessEnv {
  const config = [
    'sandbox = false',
    'build-users-group =',
    'experimental-features = nix-command flakes',
    'substituters =',
    extra,
  ]
    .filter((l) => l !== '')
    .join('\n');
  return { ...process.env, NIX_CONFIG: config };
}
