# checks.nixos-old-kernel: the basic test on the oldest kernel nixpkgs still ships (5.10, else
# 5.15): CAP_BPF and CAP_PERFMON exist from 5.8, and before 5.11 BPF maps are charged to
# RLIMIT_MEMLOCK, which the unit lifts with LimitMEMLOCK=infinity (no CAP_SYS_RESOURCE).
let
  oldest = pkgs:
    if pkgs ? linuxPackages_5_10 && (builtins.tryEval pkgs.linuxPackages_5_10).success
    then pkgs.linuxPackages_5_10
    else pkgs.linuxPackages_5_15;
in
{
  name = "beyla-old-kernel";

  nodes.machine = { pkgs, ... }: {
    imports = [ ./machine.nix ];
    boot.kernelPackages = oldest pkgs;
  };

  testScript = { nodes, ... }: ''
    machine.start()
    machine.succeed("test \"$(uname -r)\" = ${nodes.machine.boot.kernelPackages.kernel.modDirVersion}")
    machine.succeed("test -r /sys/kernel/btf/vmlinux")
  '' + builtins.readFile ./basic.py;
}
