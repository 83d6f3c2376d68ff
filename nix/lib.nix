# The flake's `lib`: a NixOS configuration that uses microvm.nix, as a pcr VM spec
# (docs/vm-spec.md). A microvm.nix guest is a closure whose bin/microvm-run starts the hypervisor it
# was built for, so the spec is that runner's store path plus the resources the guest declares.
# Pure: needs nixpkgs' lib only (and a writeText for the file); checked by nix/spec.test.ts against
# the product's own validator.
{ lib }:
rec {
  /**
    The spec of `nixos` (the result of nixosSystem, or anything with a `config` holding
    `microvm.*` and `networking.hostName`) as an attribute set. `overrides` replaces any field,
    e.g. `{ name = "web-2"; }`. The name, restart policy and health checks come from the guest's
    `procurator.vm` options (nix/guest.nix) when it imports them, else the host name.
  */
  vmSpecOf =
    nixos: overrides:
    let
      c = nixos.config;
      guest = c.procurator.vm or { };
      m = c.microvm;
      runner = m.declaredRunner or m.runner.${m.hypervisor};
    in
    {
      version = 1;
      name = guest.name or c.networking.hostName;
      runner = "${runner}";
      vcpus = m.vcpu;
      memoryMiB = m.mem;
    }
    // lib.optionalAttrs ((guest.restart or null) != null) { inherit (guest) restart; }
    // lib.optionalAttrs ((guest.health or [ ]) != [ ]) { inherit (guest) health; }
    // overrides;

  /**
    The spec as a JSON file in the store, named `<name>.json`, that `pcr vm run` takes. Its
    closure holds the runner's, so building it builds the guest. `pkgs` needs only `writeText`.
  */
  vmSpecFile =
    pkgs: nixos: overrides:
    let
      spec = vmSpecOf nixos overrides;
    in
    pkgs.writeText "${spec.name}.json" (builtins.toJSON spec);

  /** vmSpecFile for every guest of an attribute set, e.g. a flake's nixosConfigurations. */
  vmSpecFiles = pkgs: guests: lib.mapAttrs (_: nixos: vmSpecFile pkgs nixos { }) guests;
}
