# checks.fmt: the Nix files are nixpkgs-fmt clean, the Rust workspace is rustfmt clean
# (`cargo fmt --check`, which reads only the workspace's own manifests: no crates needed).
{ lib
, runCommandLocal
, cargo
, rustfmt
, nixpkgs-fmt
}:

let
  fs = lib.fileset;
  src = fs.toSource {
    root = ../.;
    fileset = fs.difference
      (fs.unions [
        (fs.fileFilter (file: file.hasExt "nix" || file.hasExt "rs" || file.name == "Cargo.toml") ../.)
        ../Cargo.lock
      ])
      (fs.unions (map fs.maybeMissing [ ../.git ../target ../testapps/build ]));
  };
in
runCommandLocal "beyla-fmt-check"
{
  nativeBuildInputs = [ cargo rustfmt nixpkgs-fmt ];
} ''
  cd ${src}
  export HOME="$TMPDIR" CARGO_HOME="$TMPDIR/cargo" CARGO_TARGET_DIR="$TMPDIR/target"
  status=0
  echo "nixpkgs-fmt --check"
  find . -name '*.nix' -print0 | xargs -0 nixpkgs-fmt --check || status=1
  echo "cargo fmt --check"
  cargo fmt --all --check || status=1
  [ "$status" -eq 0 ] && touch "$out"
  exit "$status"
''
