# The flake's outputs function called with a stand-in nixpkgs input: nixpkgs' real lib and the
# package stand-ins of stub-pkgs.nix (nixpkgs cannot be fetched here, so the flake cannot be
# locked; its outputs can still be evaluated). For nix/flake.test.ts. Not evaluated here: the
# outputs that need nixpkgs itself (checks.module's nixosSystem, checks.cluster's NixOS test).
{ libPath, settingsJson ? "{}" }:
let
  lib = import libPath;
  pkgsFor =
    system:
    let
      stubs = import ./stub-pkgs.nix { inherit system; };
    in
    stubs
    // {
      inherit lib;
      callPackage = stubs.callPackage lib;
    };
  pkgs = pkgsFor "x86_64-linux";
  nixpkgs = {
    inherit lib;
    outPath = "/nixpkgs-stand-in";
    legacyPackages = lib.genAttrs [
      "x86_64-linux"
      "aarch64-linux"
    ] pkgsFor;
  };
  flake = import ../../flake.nix;
  outputs = flake.outputs {
    self = outputs // { outPath = ../..; };
    inherit nixpkgs;
  };
  package = outputs.packages.x86_64-linux.default;
in
{
  outputNames = builtins.attrNames outputs;
  systems = builtins.attrNames outputs.packages;
  checkNames = builtins.attrNames outputs.checks.x86_64-linux;
  checkNamesAarch64 = builtins.attrNames outputs.checks.aarch64-linux;
  package = {
    path = toString package;
    inherit (package.args)
      pname
      version
      dontNpmBuild
      npmBuildScript
      ;
    src = toString package.args.src;
    npmRoot = toString package.args.npmDeps.npmRoot;
    installPhase = package.args.installPhase;
    mainProgram = package.args.meta.mainProgram;
  };
  app = outputs.apps.x86_64-linux.default;
  devShell = {
    packages = map (p: p.name) outputs.devShells.x86_64-linux.default.args.packages;
    PCR_NIXPKGS_LIB = outputs.devShells.x86_64-linux.default.args.PCR_NIXPKGS_LIB;
  };
  # The flake's module, through the same harness as nix/module.test.ts.
  module = import ./eval-module.nix {
    inherit libPath settingsJson pkgs;
    module = outputs.nixosModules.default;
  };
  libNames = builtins.attrNames outputs.lib;
  overlayPackage = toString ((outputs.overlays.default pkgs pkgs).procurator);
  # The NixOS test's arguments as far as they evaluate without NixOS: its name, machines, script.
  cluster =
    let
      t = outputs.checks.x86_64-linux.cluster;
    in
    {
      inherit (t) name testScript;
      nodes = builtins.attrNames t.nodes;
    };
}
