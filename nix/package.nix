# The agent, built from the workspace. The BPF programs (bpf/*.bpf.c) are compiled by
# libbpf-cargo with the compiler named by BPF_CLANG: clang-unwrapped, because the cc-wrapper's
# hardening flags (-fzero-call-used-regs, -fstack-protector, ...) are not valid for `-target bpf`.
# The BTF header is committed (bpf/include/vmlinux/), so the build needs no /sys. libbpf-sys
# builds its vendored libbpf with the ordinary C compiler against elfutils' libelf and zlib.
# Only the unprivileged tests run here: the `root_*` ones load BPF programs into the kernel.
{ lib
, rustPlatform
, llvmPackages
, pkg-config
, elfutils
, zlib
}:

let
  workspace = lib.importTOML ../Cargo.toml;
  bpfClang = llvmPackages.clang-unwrapped;
in
rustPlatform.buildRustPackage {
  pname = "beyla";
  inherit (workspace.workspace.package) version;

  # The whole workspace (every member must be present for Cargo), minus build outputs and the
  # Nix-only files, so that editing the flake or the module does not rebuild the agent. The
  # tests read docs/config.md, deploy/systemd/ and the module's example settings.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      (lib.fileset.difference ../. (
        lib.fileset.unions (
          map lib.fileset.maybeMissing [
            ../.git
            ../target
            ../result
            ../testapps/build
            ../flake.nix
            ../flake.lock
            ../nix
            ../nixos-module
            ../vm-tests/nixos
            ../docs/nixos.md
            ../scripts/check-nix.sh
          ]
        )
      ))
      ../nixos-module/example-settings.yml
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  cargoBuildFlags = [ "-p" "beyla" ];
  cargoTestFlags = [ "-p" "beyla" ];
  # checkFlags go to the test binaries (after `--`): skip every test whose name has `root_`,
  # and the `gobuild_` ones, which build Go apps with Debian's go1.19 and go1.23 (not here).
  checkFlags = [ "--skip=root_" "--skip=gobuild_" ];

  nativeBuildInputs = [
    pkg-config
    bpfClang
  ];
  buildInputs = [
    elfutils
    zlib
  ];

  env.BPF_CLANG = lib.getExe' bpfClang "clang";

  meta = {
    description = "Zero-code eBPF auto-instrumentation agent, a drop-in replacement for Grafana Beyla";
    license = lib.licenses.asl20;
    mainProgram = "beyla";
    platforms = lib.platforms.linux;
  };
}
