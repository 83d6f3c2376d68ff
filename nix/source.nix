# The repository's files that a derivation needs, as a source: the top-level entries named in
# `top` (files or folders), less files whose name ends with one of `dropSuffixes`. A filter rather
# than lib.fileset, which needs Nix 2.14 (the machines that run the unit tests have 2.8).
{ lib }:
{
  name,
  top,
  dropSuffixes ? [ ],
}:
let
  root = toString ../.;
in
lib.cleanSourceWith {
  inherit name;
  src = ../.;
  filter =
    path: type:
    let
      rel = lib.removePrefix "${root}/" (toString path);
      first = builtins.head (lib.splitString "/" rel);
    in
    builtins.elem first top && !(type == "regular" && lib.any (s: lib.hasSuffix s rel) dropSuffixes);
}
