# checks.nixos-otlp: the agent exports to an OpenTelemetry Collector (nixpkgs'
# services.opentelemetry-collector, contrib distribution for its file exporter) over OTLP/HTTP.
# It asserts Beyla's metric and span names, the service name from the selector and the
# `GET /ping` span as the collector's file exporter writes them.
let
  dir = "/var/lib/opentelemetry-collector";
in
{
  name = "beyla-otlp";

  nodes.machine = { pkgs, ... }: {
    imports = [ ./machine.nix ];

    services.beyla.settings = {
      otel_metrics_export = {
        endpoint = "http://127.0.0.1:4318/v1/metrics";
        protocol = "http/protobuf";
        interval = "5s";
      };
      otel_traces_export = {
        endpoint = "http://127.0.0.1:4318/v1/traces";
        protocol = "http/protobuf";
      };
    };
    systemd.services.beyla = {
      after = [ "opentelemetry-collector.service" ];
      wants = [ "opentelemetry-collector.service" ];
    };

    services.opentelemetry-collector = {
      enable = true;
      package = pkgs.opentelemetry-collector-contrib;
      settings = {
        receivers.otlp.protocols = {
          grpc.endpoint = "127.0.0.1:4317";
          http.endpoint = "127.0.0.1:4318";
        };
        exporters = {
          "file/metrics".path = "${dir}/metrics.json";
          "file/traces".path = "${dir}/traces.json";
        };
        service.pipelines = {
          metrics = {
            receivers = [ "otlp" ];
            exporters = [ "file/metrics" ];
          };
          traces = {
            receivers = [ "otlp" ];
            exporters = [ "file/traces" ];
          };
        };
      };
    };
  };

  testScript = ''
    machine.wait_for_unit("opentelemetry-collector.service")
    machine.wait_for_open_port(4318)
    machine.wait_for_unit("testapp.service")
    machine.wait_for_open_port(8080)
    machine.wait_for_unit("beyla.service")
    machine.wait_for_open_port(9400)
    machine.wait_until_succeeds(
        "curl -sf localhost:9400/internal/metrics | grep -Eq '^beyla_instrumented_processes [1-9]'",
        timeout=120,
    )
    for _ in range(3):
        machine.succeed("curl -sf localhost:8080/ping")

    # The file exporter writes one OTLP/JSON document per line.
    machine.wait_until_succeeds(
        "grep -F '\"http.server.request.duration\"' ${dir}/metrics.json"
        " | grep -qF '{\"key\":\"service.name\",\"value\":{\"stringValue\":\"testapp\"}}'",
        timeout=90,
    )
    machine.wait_until_succeeds(
        "grep -F '\"name\":\"GET /ping\"' ${dir}/traces.json"
        " | grep -qF '{\"key\":\"service.name\",\"value\":{\"stringValue\":\"testapp\"}}'",
        timeout=90,
    )
  '';
}
