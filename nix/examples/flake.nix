# A microvm.nix guest that Procurator runs (docs/nix.md, "A microvm.nix guest"):
#   nix build .#vmSpecs.web          # the guest's runner and result -> web.json (a pcr VM spec)
#   pcr store push $(jq -r .runner result)
#   pcr vm run result --on <node>
{
  description = "A microvm.nix guest as a Procurator VM";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    microvm = {
      url = "github:astro/microvm.nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    # This repository; outside it, its flake URL.
    procurator = {
      url = "path:../..";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      microvm,
      procurator,
    }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
    in
    {
      nixosConfigurations.web = nixpkgs.lib.nixosSystem {
        inherit system;
        modules = [
          microvm.nixosModules.microvm
          procurator.nixosModules.guest
          {
            networking.hostName = "web";
            microvm = {
              hypervisor = "qemu";
              vcpu = 2;
              mem = 512; # MiB: the spec's memoryMiB
              # No /nix/store share: the guest's store goes on a disk image inside the runner's
              # closure, so the runner alone (fetched by the node from the cluster) is the VM.
            };
            procurator.vm.restart = {
              policy = "on-failure";
              maxAttempts = 5;
            };
            services.getty.autologinUser = "root";
            system.stateVersion = "25.11";
          }
        ];
      };

      # `nix build .#vmSpecs.web`: one spec file per guest in nixosConfigurations.
      legacyPackages.${system}.vmSpecs = procurator.lib.vmSpecFiles pkgs self.nixosConfigurations;
    };
}
