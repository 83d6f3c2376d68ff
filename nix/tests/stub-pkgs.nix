# Stand-ins for the nixpkgs packages and builders that nix/module.nix, nix/package.nix and
# flake.nix refer to (nixpkgs cannot be fetched where the unit tests run). Each package is a real
# derivation that is never built: the tests look at the store paths, text and arguments that the
# expressions pass on, not at what the packages contain. buildNpmPackage and mkShell keep their
# arguments (`args`) for the tests to inspect.
{
  system ? "x86_64-linux",
}:
let
  stub =
    name:
    derivation {
      inherit name system;
      builder = "/bin/sh";
      args = [
        "-c"
        "echo stand-in > $out"
      ];
    };
  self = {
    stdenv.hostPlatform.system = system;
    procurator = stub "procurator-0.1.0";
    nix = stub "nix-2.28";
    nodejs = stub "nodejs-22";
    nodejs_22 = stub "nodejs-22";
    makeWrapper = stub "make-wrapper-hook";
    iproute2 = stub "iproute2";
    xz = stub "xz";
    zstd = stub "zstd";
    iptables = stub "iptables";
    coreutils = stub "coreutils";
    qemu = stub "qemu";
    busybox = stub "busybox";
    cpio = stub "cpio";
    etcd = stub "etcd";
    nixfmt-tree = stub "nixfmt-tree";
    jq = stub "jq";
    qemu_test = stub "qemu-test";
    linuxPackages.kernel = stub "linux";
    pkgsStatic.busybox = stub "busybox-static";
    writeShellScriptBin = name: text: stub name // { inherit text; };
    writeScript = name: text: stub name // { inherit text; };
    writeText = name: text: stub name // { inherit text; };
    runCommand = name: env: script: stub name // { inherit script; };
    makeInitrd = args: stub "initrd" // { inherit args; };
    # The NixOS test framework: its arguments, for the test script and nodes to be looked at.
    testers.runNixOSTest = args: args;
    buildNpmPackage =
      args:
      stub "npm-${args.pname}-${args.version}"
      // {
        inherit args;
        meta = args.meta or { };
      };
    mkShell = args: stub "nix-shell" // { inherit args; };
    importNpmLock = {
      __functor = _: { npmRoot }: stub "npm-deps" // { inherit npmRoot; };
      npmConfigHook = stub "npm-config-hook";
    };
  };
  # nixpkgs' callPackage, as far as these expressions need it: the function's arguments from the
  # package set (and `lib`), then the explicit ones.
  callPackage =
    lib: path: extra:
    let
      f = import path;
    in
    f (builtins.intersectAttrs (builtins.functionArgs f) (self // { inherit lib; }) // extra);
in
self // { inherit callPackage; }
