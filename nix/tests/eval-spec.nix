# A microvm.nix guest made of stand-ins, turned into a VM spec by nix/lib.nix, for
# nix/spec.test.ts. microvm.nix cannot be fetched here: `microvmOptions` declares the options of
# its that the helper reads (with microvm.nix's defaults: 1 vcpu, 512 MiB), and the runner is a
# real store path with an executable bin/microvm-run that prints a line and then sleeps, standing
# in for a hypervisor (nix/spec.test.ts runs it through a real node).
#   nix-instantiate --eval --strict --json nix/tests/eval-spec.nix -A spec --arg libPath ...
#   nix-build nix/tests/eval-spec.nix -A file --arg libPath ...
{
  libPath,
  guestJson ? "{}",
  withGuestModule ? true,
}:
let
  lib = import libPath;
  pcr = import ../lib.nix { inherit lib; };
  inherit (lib) mkOption types;
  system = builtins.currentSystem;

  runner = derivation {
    name = "microvm-qemu-web";
    inherit system;
    builder = "/bin/sh";
    args = [
      "-c"
      ''/bin/mkdir -p $out/bin && printf '#!/bin/sh\necho stand-in runner up\nexec /bin/sleep 600\n' > $out/bin/microvm-run && /bin/chmod +x $out/bin/microvm-run''
    ];
  };

  microvmOptions = {
    options.microvm = {
      vcpu = mkOption {
        type = types.ints.positive;
        default = 1;
      };
      mem = mkOption {
        type = types.ints.positive;
        default = 512;
      };
      hypervisor = mkOption {
        type = types.str;
        default = "qemu";
      };
      declaredRunner = mkOption { type = types.package; };
    };
    options.networking.hostName = mkOption {
      type = types.str;
      default = "nixos";
    };
  };

  nixos = lib.evalModules {
    modules = [
      microvmOptions
      { microvm.declaredRunner = runner; }
      (builtins.fromJSON guestJson)
    ]
    ++ lib.optional withGuestModule ../guest.nix;
  };

  # nixpkgs' writeText, as far as the helper uses it: a file in the store holding `text`.
  writeText =
    name: text:
    derivation {
      inherit name system text;
      builder = "/bin/sh";
      args = [
        "-c"
        ''printf '%s' "$text" > $out''
      ];
    };
in
{
  spec = pcr.vmSpecOf nixos { };
  file = pcr.vmSpecFile { inherit writeText; } nixos { };
  files = pcr.vmSpecFiles { inherit writeText; } { web = nixos; };
  runner = "${runner}";
}
