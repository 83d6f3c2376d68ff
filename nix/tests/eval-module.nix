# Evaluates nix/module.nix with nixpkgs' lib, the NixOS option declarations of nixos-options.nix
# and the package stand-ins of stub-pkgs.nix, and returns what nix/module.test.ts asserts on.
#   nix-instantiate --eval --strict --json nix/tests/eval-module.nix \
#     --arg libPath "$PCR_NIXPKGS_LIB" --argstr settingsJson '{"enable": true}'
{
  libPath,
  settingsJson,
  # The module under test: nix/module.nix, or the flake's nixosModules.default (eval-flake.nix).
  module ? ../module.nix,
  pkgs ? import ./stub-pkgs.nix { },
}:
let
  lib = import libPath;
  eval = lib.evalModules {
    modules = [
      ./nixos-options.nix
      module
      {
        _module.args.pkgs = pkgs;
        services.procurator = builtins.fromJSON settingsJson;
      }
    ];
  };
  c = eval.config;
  unit = c.systemd.services.procurator or null;
in
{
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
  unit =
    if unit == null then
      null
    else
      {
        inherit (unit)
          serviceConfig
          wantedBy
          after
          environment
          startLimitBurst
          ;
        path = map toString unit.path;
      };
  tmpfiles = c.systemd.tmpfiles.rules;
  firewallTcpPorts = c.networking.firewall.allowedTCPPorts;
  systemPackages = map (p: {
    name = p.name;
    text = p.text or null;
  }) c.environment.systemPackages;
  nixSettings = c.nix.settings;
  stubs = {
    procurator = toString pkgs.procurator;
    nix = toString pkgs.nix;
    iproute2 = toString pkgs.iproute2;
    xz = toString pkgs.xz;
    zstd = toString pkgs.zstd;
    coreutils = toString pkgs.coreutils;
  };
}
