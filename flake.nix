# Procurator as a flake: the `pcr` package, a NixOS module (services.procurator), a helper that
# turns microvm.nix guests into pcr VM specs, a development shell and checks. docs/nix.md.
{
  description = "Procurator (pcr): a Nix-native microVM orchestrator with no master";

  # nixpkgs only. microvm.nix is the guests' input (nix/examples/flake.nix), not this flake's:
  # the spec helper reads a guest's `config.microvm.*` and needs nothing from microvm.nix itself.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      # vmSpecOf, vmSpecFile, vmSpecFiles: a microvm.nix guest as a pcr VM spec (nix/lib.nix).
      lib = import ./nix/lib.nix { inherit lib; };

      overlays.default = final: _prev: { procurator = final.callPackage ./nix/package.nix { }; };

      packages = forAllSystems (pkgs: rec {
        procurator = pkgs.callPackage ./nix/package.nix { };
        default = procurator;
      });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
      });

      # services.procurator, with this flake's package as the default.
      nixosModules.default =
        { pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.procurator.package =
            lib.mkDefault
              self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
      # procurator.vm.{name,restart} for a microvm.nix guest (nix/guest.nix).
      nixosModules.guest = ./nix/guest.nix;

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          # What the tests drive for real: Nix, QEMU with a kernel and busybox for microVMs,
          # cpio for initramfs images, ip and iptables for partitions, etcd for the benchmarks.
          packages = [
            pkgs.nodejs_22
            pkgs.nix
            pkgs.qemu
            pkgs.busybox
            pkgs.cpio
            pkgs.iproute2
            pkgs.iptables
            pkgs.etcd
          ];
          # The module's tests evaluate nix/module.nix with this nixpkgs' lib (test/tools.ts).
          PCR_NIXPKGS_LIB = "${nixpkgs}/lib";
        };
      });

      checks = forAllSystems (
        pkgs:
        let
          system = pkgs.stdenv.hostPlatform.system;
        in
        {
          package = self.packages.${system}.default;
          # The pure suites as a derivation: consensus, state machine, checker, simulator.
          unit = pkgs.callPackage ./nix/tests/unit.nix { };
          # The module rendered by NixOS itself into a systemd unit file.
          module =
            (lib.nixosSystem {
              inherit system;
              modules = [
                self.nixosModules.default
                {
                  boot.isContainer = true;
                  system.stateVersion = "25.11";
                  services.procurator.enable = true;
                }
              ];
            }).config.systemd.units."procurator.service".unit;
        }
        // lib.optionalAttrs (system == "x86_64-linux") {
          # Three machines, one seed, a leader crash, a VM spec run on a named machine.
          cluster = import ./nix/tests/cluster.nix { inherit pkgs self; };
        }
      );

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);
    };
}
