# The node every NixOS test starts from: the Python test service (testapps/python-http) on :8080
# as a systemd service of its own user, and services.beyla with the module's example settings
# (nixos-module/example-settings.yml, the file agent/tests/systemd_unit.rs checks), so the VM
# tests run the configuration the documentation shows.
{ lib, pkgs, ... }:

{
  services.beyla = {
    enable = true;
    settings = lib.mkMerge [
      (lib.importJSON ../../nixos-module/example-settings.yml)
      {
        # Find the test service quickly (defaults: a scan every 5 s, processes older than 5 s).
        discovery = {
          poll_interval = "1s";
          min_process_age = "1s";
        };
      }
    ];
  };

  systemd.services.testapp = {
    description = "HTTP test service instrumented by beyla";
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      ExecStart = "${pkgs.python3.interpreter} ${../../testapps/python-http/app.py} 8080";
      DynamicUser = true;
    };
  };

  environment.systemPackages = [ pkgs.curl ];
  virtualisation.memorySize = 1024;
}
