# Guest-side options of a microvm.nix guest that Procurator runs: what its VM spec says beyond
# what microvm.nix already declares (vcpus, memory, runner). Read by vmSpecOf in nix/lib.nix;
# optional: without this module the spec takes the host name and the defaults.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  options.procurator.vm = {
    name = mkOption {
      type = types.strMatching "[a-z0-9][a-z0-9-]{0,39}";
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = ''
        The VM's name in the cluster (`pcr vm list`): lower-case letters, digits and dashes, at
        most 40 characters (docs/vm-spec.md).
      '';
    };
    restart = mkOption {
      type = types.nullOr (types.attrsOf (types.either types.str types.int));
      default = null;
      example = {
        policy = "on-failure";
        maxAttempts = 5;
      };
      description = ''
        The spec's restart policy (docs/vm-spec.md, `restart`); null leaves pcr's default (never).
      '';
    };
    health = mkOption {
      # Checks are small attribute sets of strings, numbers and one nested set (tcp, http):
      # their shape is the validator's to check (docs/vm-spec.md, `health`), not repeated here.
      type = types.listOf (types.attrsOf types.anything);
      default = [ ];
      example = [
        { console = "web ready"; }
        {
          http = {
            host = "10.0.0.2";
            port = 80;
            path = "/health";
          };
          intervalMs = 5000;
        }
      ];
      description = ''
        The spec's health checks (docs/vm-spec.md, `health`): the node that runs the VM evaluates
        them and `pcr vm status` shows the verdict. Empty: none (healthy while it runs).
      '';
    };
  };
}
