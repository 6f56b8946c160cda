#!/usr/bin/env bash
# Regenerates the figures of docs/reliability.md (issue 23) with a release build:
#   - hostile traffic on a traced nginx at full scale (bench/hostile.py --scale 1 --rss-bounds:
#     100k distinct paths, 100k dropped connections, ...);
#   - a soak of mixed load and process churn (bench/soak.py --rss-bounds), 60 min by default.
# Writes target/reliability/{hostile,soak}.json and replaces the part of docs/reliability.md
# between `<!-- figures:begin -->` and `<!-- figures:end -->`. The fuzzing figures come from
# scripts/fuzz.sh --long (docs/fuzzing.md), the fault and privilege tests from cargo test.
#
#   sudo scripts/reliability.sh [--soak-minutes N]     (default 60; CI runs a 5-minute soak)
# Needs root, nginx and the test apps (scripts/setup.sh, testapps/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
soak_minutes=60
while (($# > 0)); do
  case "$1" in
  --soak-minutes)
    soak_minutes=$2
    shift 2
    ;;
  *)
    echo "usage: $0 [--soak-minutes N]" >&2
    exit 2
    ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "reliability.sh: the agent loads BPF programs: run as root" >&2
  exit 1
fi

out=target/reliability
mkdir -p "$out"
echo "== build (release agent, test apps)"
cargo build --release -p beyla --bin beyla
bash testapps/build.sh >/dev/null

status=0
echo "== hostile traffic, full scale"
python3 bench/hostile.py --agent target/release/beyla --scale 1 --rss-bounds --json "$out/hostile.json" \
  >"$out/hostile.log" 2>&1 || status=1
tail -n 3 "$out/hostile.log"
echo "== soak, $soak_minutes min"
python3 bench/soak.py --agent target/release/beyla --minutes "$soak_minutes" --rss-bounds --json "$out/soak.json" \
  >"$out/soak.log" 2>&1 || status=1
tail -n 3 "$out/soak.log"

echo "== docs/reliability.md"
python3 - "$out" <<'EOF'
import json, os, subprocess, sys, time
out = sys.argv[1]
h = json.load(open(os.path.join(out, "hostile.json")))
s = json.load(open(os.path.join(out, "soak.json")))
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
mark = lambda ok: "yes" if ok else "**no**"
lines = [f"Measured {time.strftime('%Y-%m-%d')} at {rev}, kernel {os.uname().release}, with "
         "`sudo scripts/reliability.sh` (release build).", "",
         f"**Hostile traffic** (`bench/hostile.py --scale {h['scale']} --rss-bounds`):", "",
         "| scenario | connections or requests | nginx's answer bytes | identical with the agent |", "|---|---|---|---|"]
for name, w in h["with_agent"].items():
    lines.append(f"| {name} | {w['count']:,} | {w['answer_bytes']:,} | "
                 f"{mark(w['sha256'] == h['without_agent'][name]['sha256'])} |")
a = h["agent"]
errors = ", ".join(f"{k} {int(v):,}" for k, v in sorted(a["decode_errors"].items()))
lines += ["", f"Agent: alive {mark(a['alive'])}; RSS {a['rss_before_mb']} MB before, peak {a['rss_peak_mb']} MB "
          f"(VmHWM {a['vmhwm_mb']}), {a['rss_end_mb']} MB after; {int(a['requests']):,} requests counted "
          f"({int(a['paths_404']):,} of {h['counts']['paths']:,} paths, {int(a['deep_pipeline_404']):,} of "
          f"{100 * h['counts']['deep_pipeline']:,} deeply pipelined ones); {a['route_series']} route series; "
          f"events lost {int(a['events_lost'])}; decode errors by reason: {errors}.", "",
          "| check | passed |", "|---|---|"]
lines += [f"| {k} | {mark(v)} |" for k, v in h["checks"].items()]
lines += ["", f"**Soak** (`bench/soak.py --minutes {s['minutes']:g} --rss-bounds`): {s['requests_sent']:,} requests, "
          f"{s['churned']} services started and stopped ({s['churned_exact']} counted exactly), "
          f"client errors {s['client_errors']}, events lost {int(s['events_lost'])}. RSS {s['rss_mb_first']} MB "
          f"at the start of the measured window (the last two thirds), {s['rss_mb_last']} MB at its end, "
          f"peak {s['rss_mb_peak']} MB; slope **{s['rss_slope_mb_per_h']} MB/h**. Lowest fds per half "
          f"{s['fds_low']}, BPF links {s['bpf_links_low']}, BPF maps {s['bpf_maps']}; series on /metrics "
          f"{s['series']}.", "", "| check | passed |", "|---|---|"]
lines += [f"| {k} | {mark(v)} |" for k, v in s["checks"].items()]
path = "docs/reliability.md"
text = open(path).read()
begin, end = "<!-- figures:begin -->", "<!-- figures:end -->"
i, j = text.index(begin) + len(begin), text.index(end)
open(path, "w").write(text[:i] + "\n" + "\n".join(lines) + "\n" + text[j:])
print("\n".join(lines))
EOF
exit $status
