# Shared by basic.nix and old-kernel.nix: the agent, started by services.beyla with its hardened
# unit, instruments the test service and counts exactly the requests sent to it.
machine.wait_for_unit("testapp.service")
machine.wait_for_open_port(8080)
machine.wait_for_unit("beyla.service")
machine.wait_for_open_port(9400)

# Least privilege: a dynamic (non-root) user holding exactly the base capabilities of
# deploy/systemd/hardening.json: DAC_READ_SEARCH (2), SYS_PTRACE (19), PERFMON (38), BPF (39).
pid = machine.succeed("systemctl show -P MainPID beyla.service").strip()
machine.succeed(f"test \"$(stat -c %u /proc/{pid})\" -ne 0")
machine.succeed(f"grep -Eq '^CapEff:[[:space:]]+000000c000080004$' /proc/{pid}/status")
machine.succeed(f"grep -Eq '^CapBnd:[[:space:]]+000000c000080004$' /proc/{pid}/status")
print(machine.succeed("systemd-analyze security beyla.service --no-pager || true"))

# Traffic sent before the agent traces the service is not counted: wait until it does.
machine.wait_until_succeeds(
    "curl -sf localhost:9400/internal/metrics | grep -Eq '^beyla_instrumented_processes [1-9]'",
    timeout=120,
)
for _ in range(3):
    machine.succeed("curl -sf localhost:8080/ping")

machine.wait_until_succeeds(
    "curl -sf localhost:9400/metrics"
    " | grep '^http_server_request_duration_seconds_count{'"
    " | grep 'service_name=\"testapp\"'"
    " | grep 'http_route=\"/ping\"'"
    " | grep -q '} 3$'",
    timeout=60,
)
print(machine.succeed("curl -sf localhost:9400/metrics | grep '^http_server_request_duration_seconds_count'"))
machine.succeed("journalctl -u beyla.service --no-pager | grep -q 'Agent running'")
