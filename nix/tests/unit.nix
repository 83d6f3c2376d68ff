# The pure test suites as a derivation (flake check `unit`): consensus, the state machine, the
# checker and the simulator, which need no system tool, no network beyond loopback and no Nix
# store of their own. The suites that drive Nix, QEMU or namespaces run in .ci/run and in the
# NixOS test (cluster.nix), not in the build sandbox.
{
  lib,
  buildNpmPackage,
  importNpmLock,
  nodejs,
}:
let
  packageJson = lib.importJSON ../../package.json;
  src = import ../source.nix { inherit lib; } {
    name = "procurator-tests-source";
    top = [
      "package.json"
      "package-lock.json"
      "tsconfig.json"
      "vitest.config.ts"
      "test"
      "bin"
      "consensus"
      "node"
      "sim"
      "jepsen"
    ];
  };
in
buildNpmPackage {
  pname = "procurator-unit-tests";
  inherit (packageJson) version;
  inherit src nodejs;
  npmDeps = importNpmLock { npmRoot = src; };
  npmConfigHook = importNpmLock.npmConfigHook;
  dontNpmBuild = true;
  doCheck = true;
  checkPhase = ''
    runHook preCheck
    npx vitest run consensus node/state jepsen/checker sim
    runHook postCheck
  '';
  installPhase = ''
    touch $out
  '';
}
