# Stand-ins for the nixpkgs packages nix/module.nix refers to (nixpkgs cannot be fetched where the
# unit tests run). Each is a real derivation that is never built: the tests look at the store
# paths and text the module puts into the unit, not at what the packages contain.
let
  stub =
    name:
    derivation {
      inherit name;
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [
        "-c"
        "echo stand-in > $out"
      ];
    };
in
{
  procurator = stub "procurator-0.1.0";
  nix = stub "nix-2.28";
  iproute2 = stub "iproute2";
  coreutils = stub "coreutils";
  qemu = stub "qemu";
  writeShellScriptBin = name: text: stub name // { inherit text; };
}
