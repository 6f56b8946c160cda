{
  description = "beyla-rs: zero-code eBPF auto-instrumentation, a drop-in replacement for Grafana Beyla";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      agentFor = pkgs: self.packages.${pkgs.stdenv.hostPlatform.system}.default;
    in
    {
      overlays.default = final: _prev: {
        beyla-rs = final.callPackage ./nix/package.nix { };
      };

      packages = forAllSystems (pkgs:
        let
          agent = pkgs.callPackage ./nix/package.nix { };
        in
        {
          default = agent;
          oci = pkgs.callPackage ./nix/oci.nix { inherit agent; };
          demo = pkgs.callPackage ./nix/demo.nix { inherit agent; };
        });

      # services.beyla, with the agent built from this flake against the system's nixpkgs.
      nixosModules.default = { lib, pkgs, ... }: {
        imports = [ ./nixos-module ];
        services.beyla.package = lib.mkDefault (pkgs.callPackage ./nix/package.nix { });
      };

      checks = forAllSystems (pkgs:
        let
          nixosTest = file: pkgs.testers.runNixOSTest {
            imports = [ file ];
            defaults.imports = [ self.nixosModules.default ];
          };
        in
        {
          # Builds the agent and runs its unprivileged tests (cargo test -p beyla -- --skip=root_ --skip=gobuild_).
          unit = agentFor pkgs;
          fmt = pkgs.callPackage ./nix/fmt.nix { };
          clippy = pkgs.callPackage ./nix/clippy.nix { agent = agentFor pkgs; };
          nixos-basic = nixosTest ./vm-tests/nixos/basic.nix;
          nixos-otlp = nixosTest ./vm-tests/nixos/otlp.nix;
          nixos-old-kernel = nixosTest ./vm-tests/nixos/old-kernel.nix;
        });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = lib.getExe (agentFor pkgs);
          meta.description = "The beyla-rs agent (needs root or the capabilities in docs/nixos.md)";
        };
        demo = {
          type = "app";
          program = lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.demo;
          meta.description = "The Python sample service on :8080 instrumented by the agent (run as root)";
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [
            cargo
            rustc
            rustfmt
            clippy
            llvmPackages.clang
            llvmPackages.llvm
            pkg-config
            bpftools
            go
            jdk
            nodejs
            python3
            wrk
            prometheus
            qemu
            curl
            nixpkgs-fmt
            deadnix
          ];
          buildInputs = with pkgs; [ elfutils zlib ];
          # The cc-wrapper's hardening flags break `-target bpf`: compile BPF with the bare clang.
          BPF_CLANG = lib.getExe' pkgs.llvmPackages.clang-unwrapped "clang";
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
