# checks.nixos-basic: services.beyla on the default kernel instruments a Python HTTP service.
{
  name = "beyla-basic";

  nodes.machine = ./machine.nix;

  testScript = builtins.readFile ./basic.py;
}
