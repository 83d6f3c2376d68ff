# Two small closures for the closure diff test (node/deploy/diff.nix.test.ts), built offline with
# /bin/sh as builder (no nixpkgs): `side = "a"` and `side = "b"` share some paths and differ in
# the ways `nix store diff-closures` reports: a version change with a size change, an output
# suffix, a package gone, a package new, an empty version, two versions of one package, a rebuild
# whose size moves by exactly 8.25 KiB (a rounding tie), one that shrinks, one whose size moves
# too little to be shown.
#   nix-build --no-out-link test/deploy/closures.nix --argstr side a
{ side }:
let
  a = side == "a";
  # A path `name` holding `bytes` zero bytes (a multiple of 8: NAR sizes then move by exactly as
  # much) and a file naming its references (which Nix records as the path's references).
  pkg =
    name: bytes: deps:
    derivation {
      inherit name;
      system = builtins.currentSystem;
      builder = "/bin/sh";
      args = [
        "-c"
        "/bin/mkdir $out && echo ${toString deps} > $out/deps && /usr/bin/head -c ${toString bytes} /dev/zero > $out/blob"
      ];
    };
  zlib = pkg "zlib-1.2.13" 4096 [ ];
  libfoo = if a then pkg "libfoo-2.0" 1000 [ zlib ] else pkg "libfoo-2.1" 21000 [ zlib ];
  tool = pkg (if a then "tool-1.0-bin" else "tool-1.1-bin") 800 [ ];
  libbar = pkg "libbar-1.0" (if a then 1000 else 1000 + 8448) [ ];
  shrink = pkg "shrink-0.9" (if a then 20000 else 0) [ ];
  small = pkg "small-1.0" (if a then 16 else 24) [ ];
  data = if a then pkg "data" 8 [ ] else pkg "data-2" 8 [ ];
  libm = if a then [ (pkg "libm-1.0" 8 [ ]) (pkg "libm-1.1" 8 [ ]) ] else [ (pkg "libm-1.1" 8 [ ]) ];
  gone = pkg "gone-3.0" 64 [ ];
  fresh = pkg "fresh-0.1" 64 [ ];
  deps =
    [ libfoo tool libbar shrink small data ]
    ++ libm
    ++ (if a then [ gone ] else [ fresh ]);
in
pkg (if a then "hello-1.0" else "hello-1.1") 8 deps
