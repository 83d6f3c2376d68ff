# Declarations of the few NixOS options that nix/module.nix sets, typed like NixOS's own, so the
# module can be evaluated with nixpkgs' lib alone (nixpkgs itself cannot be fetched on the
# machines that run the unit tests). A stand-in for nixos/modules, used only by eval-module.nix:
# an option the module sets that is not declared here fails the evaluation, as it would in NixOS.
{ lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  # systemd unit values as NixOS's unitOption takes them.
  unitValue = types.oneOf [
    types.bool
    types.int
    types.str
    (types.listOf types.str)
  ];
  service = types.submodule {
    options = {
      description = mkOption { type = types.str; };
      wantedBy = mkOption { type = types.listOf types.str; default = [ ]; };
      wants = mkOption { type = types.listOf types.str; default = [ ]; };
      after = mkOption { type = types.listOf types.str; default = [ ]; };
      path = mkOption { type = types.listOf types.package; default = [ ]; };
      environment = mkOption { type = types.attrsOf types.str; default = { }; };
      startLimitIntervalSec = mkOption { type = types.nullOr types.int; default = null; };
      startLimitBurst = mkOption { type = types.nullOr types.int; default = null; };
      serviceConfig = mkOption { type = types.attrsOf unitValue; default = { }; };
    };
  };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf (types.submodule {
        options.assertion = mkOption { type = types.bool; };
        options.message = mkOption { type = types.str; };
      });
      default = [ ];
    };
    systemd.services = mkOption { type = types.attrsOf service; default = { }; };
    systemd.tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; };
    environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
    networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
    networking.hostName = mkOption { type = types.str; default = "nixos"; };
    nix.package = mkOption { type = types.package; default = pkgs.nix; };
    nix.settings = mkOption { type = types.attrsOf (types.listOf types.str); default = { }; };
  };
}
