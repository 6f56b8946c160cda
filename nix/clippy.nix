# checks.clippy: `cargo clippy -p beyla --all-targets -- -D warnings` with the package's
# vendored crates and BPF toolchain (the build script compiles the BPF programs for it too).
{ clippy
, agent
}:

agent.overrideAttrs (old: {
  pname = "beyla-clippy";
  nativeBuildInputs = old.nativeBuildInputs ++ [ clippy ];
  buildPhase = ''
    runHook preBuild
    cargo clippy -j "$NIX_BUILD_CORES" --offline -p beyla --all-targets -- -D warnings
    runHook postBuild
  '';
  doCheck = false;
  installPhase = ''
    runHook preInstall
    touch "$out"
    runHook postInstall
  '';
  dontFixup = true;
})
