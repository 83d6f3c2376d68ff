// flake.nix's outputs, evaluated with the real Nix CLI and nixpkgs' real lib but a stand-in for the
// rest of nixpkgs (nix/tests/eval-flake.nix): the flake cannot be locked here (nixpkgs cannot be
// fetched), so this checks its wiring: which outputs exist, that the package is built from the
// lockfile with `pcr` as its program, and that nixosModules.default runs the flake's package.
// Not evaluated here: checks.module (NixOS's nixosSystem) and checks.cluster (the NixOS test).
import { execFile } from 'node:child_process';
import { access, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, expect, it } from 'vitest';
import { describeWithTools, NIXPKGS_LIB_TOOL, nixEnv } from '../test/tools.ts';

const exec = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

interface FlakeEval {
  outputNames: string[];
  systems: string[];
  checkNames: string[];
  checkNamesAarch64: string[];
  package: {
    path: string;
    pname: string;
    version: string;
    dontNpmBuild: boolean;
    npmBuildScript: string;
    src: string;
    npmRoot: string;
    installPhase: string;
    mainProgram: string;
  };
  app: { type: string; program: string };
  devShell: { packages: string[]; PCR_NIXPKGS_LIB: string };
  module: { unit: { serviceConfig: { ExecStart: string } } | null; failedAssertions: string[] };
  libNames: string[];
  overlayPackage: string;
  cluster: { name: string; nodes: string[]; testScript: string };
}

describeWithTools(['nix-instantiate', 'python3', NIXPKGS_LIB_TOOL], 'flake.nix outputs', () => {
  let flake: FlakeEval;
  beforeAll(async () => {
    // --read-write-mode: the package's filtered source is added to the store, to look inside.
    const r = await exec(
      'nix-instantiate',
      [
        '--eval',
        '--strict',
        '--json',
        '--read-write-mode',
        join(here, 'tests', 'eval-flake.nix'),
        '--arg',
        'libPath',
        process.env.PCR_NIXPKGS_LIB!,
        '--argstr',
        'settingsJson',
        JSON.stringify({ enable: true }),
      ],
      { env: nixEnv() },
    );
    flake = JSON.parse(r.stdout) as FlakeEval;
  });

  it('has the outputs docs/nix.md lists, for both Linux systems', () => {
    expect(flake.outputNames).toEqual([
      'apps',
      'checks',
      'devShells',
      'formatter',
      'lib',
      'nixosModules',
      'overlays',
      'packages',
    ]);
    expect(flake.systems).toEqual(['aarch64-linux', 'x86_64-linux']);
    expect(flake.checkNames).toEqual(['cluster', 'module', 'package', 'unit']);
    expect(flake.checkNamesAarch64).toEqual(['module', 'package', 'unit']);
    expect(flake.libNames).toEqual(['vmSpecFile', 'vmSpecFiles', 'vmSpecOf']);
  });

  it('builds the package from the lockfile, with pcr as its program', () => {
    const p = flake.package;
    expect(p).toMatchObject({ pname: 'procurator', version: '0.1.0', mainProgram: 'pcr' });
    expect(p.npmRoot).toBe(p.src);
    expect(p.installPhase).toContain('makeWrapper $out/lib/procurator/bin/pcr $out/bin/pcr');
    expect(flake.app).toEqual({ type: 'app', program: `${p.path}/bin/pcr` });
    expect(flake.overlayPackage).toBe(p.path);
  });

  it("the package's source holds what pcr runs from, and no tests", async () => {
    const top = (await readdir(flake.package.src)).sort();
    expect(top).toEqual(
      expect.arrayContaining(['bin', 'consensus', 'node', 'package-lock.json', 'package.json']),
    );
    expect(top).not.toContain('test');
    expect(top).not.toContain('docs');
    await access(join(flake.package.src, 'node', 'cli', 'pcr.ts'));
    await expect(access(join(flake.package.src, 'node', 'daemon.test.ts'))).rejects.toThrow();
  });

  it("nixosModules.default runs the flake's own package", () => {
    expect(flake.module.failedAssertions).toEqual([]);
    expect(flake.module.unit!.serviceConfig.ExecStart).toMatch(
      new RegExp(`^${flake.package.path}/bin/pcr node start `),
    );
  });

  it('checks.cluster has three machines and a test script Python parses', async () => {
    expect(flake.cluster.name).toBe('procurator-cluster');
    expect(flake.cluster.nodes).toEqual(['n1', 'n2', 'n3']);
    const py = exec('python3', ['-c', 'import ast, sys; ast.parse(sys.stdin.read())']);
    py.child.stdin!.end(flake.cluster.testScript);
    await py;
    // Nix interpolated the names the script needs; none is left for Python to trip on.
    expect(flake.cluster.testScript).not.toContain('${');
    expect(flake.cluster.testScript).toMatch(
      /pcr vm run \/nix\/store\/[0-9a-z]{32}-web\.json --on/,
    );
  });

  it('gives the dev shell the tools the tests drive, and nixpkgs lib for the module tests', () => {
    expect(flake.devShell.packages).toEqual(
      expect.arrayContaining(['nix-2.28', 'qemu', 'busybox', 'cpio', 'iproute2']),
    );
    expect(flake.devShell.PCR_NIXPKGS_LIB).toBe('/nixpkgs-stand-in/lib');
  });
});
