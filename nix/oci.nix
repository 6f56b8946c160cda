# OCI image of the agent: `nix build .#oci && docker load < result`. No shell, no package
# manager: the agent, CA certificates (OTLP over TLS) and an empty /tmp. The agent still needs the
# host's PID namespace and its BPF capabilities: see docs/nixos.md.
{ lib
, dockerTools
, cacert
, agent
}:

dockerTools.buildLayeredImage {
  name = "beyla";
  tag = agent.version;
  contents = [ cacert ];
  extraCommands = ''
    mkdir -m 1777 tmp
  '';
  config = {
    Entrypoint = [ (lib.getExe agent) ];
    Env = [ "SSL_CERT_FILE=${cacert}/etc/ssl/certs/ca-bundle.crt" ];
    ExposedPorts."9400/tcp" = { };
    Labels = {
      "org.opencontainers.image.title" = "beyla";
      "org.opencontainers.image.description" = agent.meta.description;
      "org.opencontainers.image.version" = agent.version;
      "org.opencontainers.image.licenses" = "Apache-2.0";
    };
  };
}
