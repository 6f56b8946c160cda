# services.beyla: the beyla-rs eBPF auto-instrumentation agent as a hardened systemd service.
# Follows nixpkgs' opentelemetry-collector module (settings or configFile, validated at build time)
# and the prometheus exporters' hardening; the unit's directives come from
# deploy/systemd/hardening.json, which the plain unit deploy/systemd/beyla.service is rendered from.
# Documentation: docs/nixos.md.
{ config
, lib
, options
, pkgs
, utils
, ...
}:

let
  inherit (lib)
    attrByPath
    elem
    filterAttrs
    getExe
    isAttrs
    isList
    isString
    literalExpression
    mapAttrs
    mkEnableOption
    mkIf
    mkOption
    mkPackageOption
    optionals
    splitString
    types
    ;

  cfg = config.services.beyla;
  opt = options.services.beyla;

  unit = builtins.fromJSON (builtins.readFile ../deploy/systemd/hardening.json);

  settingsFormat = pkgs.formats.yaml { };

  # Typed options default to null for "unset"; the agent reads an absent key as its default,
  # so nulls (and the sections they leave empty) are dropped before the YAML is written.
  clean =
    value:
    if isAttrs value then
      filterAttrs (_: v: v != null && v != { }) (mapAttrs (_: clean) value)
    else if isList value then
      map clean value
    else
      value;

  # A feature list may be a YAML list or a comma-separated string, as in the agent.
  features =
    path:
    let
      value = attrByPath path [ ] cfg.settings;
    in
    if isString value then map lib.trim (splitString "," value) else value;

  networkInSettings =
    attrByPath [ "network" "enable" ] false cfg.settings == true
    || lib.any (path: lib.any (f: elem f [ "network" "all" "*" ]) (features path)) [
      [ "prometheus_export" "features" ]
      [ "otel_metrics_export" "features" ]
      [ "metrics" "features" ]
    ];

  generatedConfig = settingsFormat.generate "beyla.yml" (clean cfg.settings);

  # A configFile given as a Nix path is in the store and can be checked; a string path (a file
  # managed outside Nix, e.g. holding secrets) is only known at run time.
  checkable = cfg.configFile == null || builtins.isPath cfg.configFile;
  unchecked = if cfg.configFile == null then generatedConfig else cfg.configFile;

  canRun = pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform;

  configFile =
    if cfg.validateConfig && checkable && canRun then
      pkgs.runCommandLocal "beyla-config.yml" { beylaConfig = unchecked; } ''
        # Errors name the key and file:line:column; warnings (features not built yet) do not fail.
        ${getExe cfg.package} config check "$beylaConfig"
        cp "$beylaConfig" "$out"
      ''
    else
      unchecked;

  capabilities =
    unit.service.CapabilityBoundingSet
    ++ optionals cfg.enableNetworkCapabilities unit.featureCapabilities.network
    ++ optionals cfg.needsSysAdmin unit.featureCapabilities.sysAdmin;

  addressFamilies =
    unit.service.RestrictAddressFamilies
    ++ optionals cfg.enableNetworkCapabilities unit.featureAddressFamilies.network;

  # One selector of discovery.instrument: typed common keys, any other selector key accepted.
  selectorModule = {
    freeformType = settingsFormat.type;
    options = {
      open_ports = mkOption {
        type = types.nullOr (
          types.oneOf [
            types.port
            types.str
            (types.listOf (types.either types.port types.str))
          ]
        );
        default = null;
        example = "8080,9000-9999";
        description = "Ports the process listens on: a port, a range `8000-8999`, or a comma-separated list.";
      };
      exe_path = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "*/bin/my-service";
        description = "Glob over the full executable path (`/proc/<pid>/exe`).";
      };
      name = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Service name given to the matching processes (`service.name`).";
      };
      namespace = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Service namespace given to the matching processes (`service.namespace`).";
      };
    };
  };

  settingsModule = {
    freeformType = settingsFormat.type;
    options = {
      discovery.instrument = mkOption {
        type = types.listOf (types.submodule selectorModule);
        default = [ ];
        example = literalExpression ''[ { open_ports = "8080"; name = "shop"; } ]'';
        description = ''
          Processes to instrument: a list of selectors. Keys inside one selector are ANDed, the
          entries are ORed. Other selector keys (`cmd_args`, `languages`, `target_pids`,
          `containers_only`, ...) are accepted as in the agent's configuration reference.
        '';
      };
      prometheus_export = {
        port = mkOption {
          type = types.nullOr types.port;
          default = 9400;
          description = "Port of the Prometheus metrics endpoint; `null` disables it.";
        };
        path = mkOption {
          type = types.str;
          default = "/metrics";
          description = "HTTP path of the Prometheus metrics endpoint.";
        };
      };
      otel_metrics_export.endpoint = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "http://127.0.0.1:4318";
        description = "OTLP endpoint metrics are sent to (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`).";
      };
      otel_traces_export.endpoint = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "http://127.0.0.1:4318";
        description = "OTLP endpoint traces are sent to (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).";
      };
      routes = {
        patterns = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [ "/users/{id}" "/static/*" ];
          description = "Route patterns naming `http.route`; the first match wins.";
        };
        unmatched = mkOption {
          type = types.enum [ "unset" "path" "wildcard" "heuristic" "low-cardinality" ];
          default = "heuristic";
          description = "Route of paths no pattern matches.";
        };
      };
    };
  };
in
{
  options.services.beyla = {
    enable = mkEnableOption "the beyla-rs eBPF auto-instrumentation agent (Beyla-compatible)";

    package = mkPackageOption pkgs "beyla-rs" {
      extraDescription = ''
        The flake's `nixosModules.default` sets this to the flake's agent; with this module alone,
        add the flake's `overlays.default` or set the option.
      '';
    };

    settings = mkOption {
      type = types.submodule settingsModule;
      default = { };
      example = literalExpression "lib.importJSON ./nixos-module/example-settings.yml";
      description = ''
        The agent's configuration, written as YAML: the same keys as Grafana Beyla's configuration
        file (see `docs/config.md`). The keys with options here are typed; any other key is passed
        through, and the result is checked with `beyla config check` at build time.
        Mutually exclusive with {option}`services.beyla.configFile`.
      '';
    };

    configFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/etc/beyla/config.yml";
      description = ''
        An existing configuration file, instead of {option}`services.beyla.settings`. A Nix path is
        copied to the store and checked at build time; a string path is read at run time only.
      '';
    };

    validateConfig = mkEnableOption "checking the configuration with `beyla config check` at build time" // {
      default = true;
    };

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/beyla.env";
      description = ''
        Environment file (systemd `EnvironmentFile=`) for secrets and overrides, e.g.
        `OTEL_EXPORTER_OTLP_HEADERS=authorization=Basic ...`. Variables override the configuration
        file, as in Beyla. Give a string path so the secret stays out of the Nix store.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the Prometheus port ({option}`services.beyla.settings.prometheus_export.port`) in the firewall.";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "--set" "log_level=DEBUG" ];
      description = "Extra command-line arguments of the agent.";
    };

    enableNetworkCapabilities = mkOption {
      type = types.bool;
      default = networkInSettings;
      defaultText = literalExpression ''
        settings.network.enable == true, or "network" in settings.prometheus_export.features,
        settings.otel_metrics_export.features or settings.metrics.features
      '';
      description = ''
        Grant `CAP_NET_ADMIN` and `CAP_NET_RAW` and allow `AF_PACKET` sockets, needed by network
        metrics (TC programs and socket filters). Follows the settings; set it when the network
        feature is enabled in {option}`services.beyla.configFile` or through the environment.
      '';
    };

    needsSysAdmin = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Grant `CAP_SYS_ADMIN`. Needed only on kernels without `CAP_BPF`/`CAP_PERFMON` (before
        5.8), with `kernel.perf_event_paranoid` above 2 (Debian/Ubuntu patches), or for features
        that write user memory (context propagation through `bpf_probe_write_user`).
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        # Only the option's own default (mkOptionDefault, priority 1500) defines the settings.
        assertion = cfg.configFile == null || opt.settings.highestPrio >= 1500;
        message = ''
          services.beyla: set either `services.beyla.settings` or `services.beyla.configFile`,
          not both: the configuration file replaces the settings entirely.
        '';
      }
    ];

    networking.firewall.allowedTCPPorts = mkIf (cfg.openFirewall && cfg.settings.prometheus_export.port != null) [
      cfg.settings.prometheus_export.port
    ];

    systemd.services.beyla = {
      description = unit.unit.Description;
      wantedBy = unit.install.WantedBy;
      after = unit.unit.After;
      wants = unit.unit.Wants;
      serviceConfig =
        unit.service
        // {
          ExecStart = utils.escapeSystemdExecArgs (
            [ (getExe cfg.package) "--config" "${configFile}" ] ++ cfg.extraArgs
          );
          AmbientCapabilities = capabilities;
          CapabilityBoundingSet = capabilities;
          RestrictAddressFamilies = addressFamilies;
        }
        // lib.optionalAttrs (cfg.environmentFile != null) {
          EnvironmentFile = cfg.environmentFile;
        };
    };
  };
}
