# The `pcr` package: the product's sources with their production node_modules, built from
# package-lock.json alone (importNpmLock reads each package's resolved URL and integrity from it:
# no npmDepsHash to keep in step), compiled by the `build` script when package.json has one, and
# `pcr` on PATH running on this nodejs. Called by flake.nix as `pkgs.callPackage ./nix/package.nix
# { }`; its evaluation is tested by nix/flake.test.ts with stand-ins for the nixpkgs builders.
{
  lib,
  buildNpmPackage,
  importNpmLock,
  nodejs,
  makeWrapper,
}:

let
  packageJson = lib.importJSON ../package.json;
  hasBuild = packageJson.scripts ? build;
  # What the product runs from; tests, docs, benchmarks and the Nix files stay out, so that editing
  # them does not rebuild the package.
  src = import ./source.nix { inherit lib; } {
    name = "procurator-source";
    top = [
      "package.json"
      "package-lock.json"
      "tsconfig.json"
      "tsconfig.build.json"
      "bin"
      "consensus"
      "node"
      "sim"
      "jepsen"
    ];
    dropSuffixes = [ ".test.ts" ];
  };
in
buildNpmPackage {
  pname = "procurator";
  inherit (packageJson) version;
  inherit src nodejs;

  npmDeps = importNpmLock { npmRoot = src; };
  npmConfigHook = importNpmLock.npmConfigHook;

  # The `build` script compiles TypeScript to dist/ when the project has one; without it bin/pcr
  # runs the sources through tsx, which is then kept (see installPhase).
  dontNpmBuild = !hasBuild;
  npmBuildScript = "build";

  nativeBuildInputs = [ makeWrapper ];

  # Our own install rather than npm pack's file list: dist/ is git-ignored, so `npm pack` (which
  # reads .gitignore) would leave the compiled output out.
  installPhase = ''
    runHook preInstall
    ${lib.optionalString hasBuild "npm prune --omit=dev --no-save --ignore-scripts"}
    mkdir -p $out/lib/procurator $out/bin
    cp -r . $out/lib/procurator/
    makeWrapper $out/lib/procurator/bin/pcr $out/bin/pcr --prefix PATH : ${lib.makeBinPath [ nodejs ]}
    runHook postInstall
  '';

  meta = {
    description = packageJson.description;
    license = lib.licenses.asl20;
    mainProgram = "pcr";
    platforms = lib.platforms.linux;
  };
}
