#!/usr/bin/env bash
# The main job (`make run`): a whole fleet on this host.
#
# Sets up what is missing and builds, makes a CA and certificates in a scratch directory,
# starts a hub and three agents (edge, regional, cloud) on loopback, deploys sample functions —
# real HTTP functions (`synapse-sample-fn`, 300–800 ms of initialisation, their execution
# times and memory taken from the trace) and an ONNX classifier served with tract — and drives
# them with a time-compressed replay of the Azure 2019 trace through the three gateways
# (`synapse-agent drive`; one trace minute per second by default). A live view prints what the
# agents measured (eBPF cold starts, warm hits, forecasts, pool sizes) and what the hub
# decided (federated rounds, the placement plan, rollouts) every few seconds. Then the same
# drive runs again with the agents alone (no hub) and the fixed 10-minute keep-alive instead of
# the forecast policy, and a summary shows both side by side.
# Everything started is stopped at the end, on Ctrl-C too.
#
# Knobs (environment): MINUTES (trace minutes per run, default 45), SPEED (trace seconds per
# second, default 60), FUNCTIONS (trace functions driven, default 8), PROFILE (release|debug).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/setup.sh
. scripts/env.sh
[ "$(id -u)" = 0 ] || { echo "run: the agents load eBPF programs: run as root" >&2; exit 1; }

MINUTES=${MINUTES:-45}
SPEED=${SPEED:-60}
FUNCTIONS=${FUNCTIONS:-8}
PROFILE=${PROFILE:-release}
TRACE=${TRACE:-$root/../shared/traces/azure2019-500fn-8h}
[ -d "$TRACE" ] || { echo "run: trace directory $TRACE not found (set TRACE=DIR)" >&2; exit 1; }

profile_flag=--release
[ "$PROFILE" = debug ] && profile_flag=
cargo build $profile_flag --locked -p synapse-agent -p synapse-hub --bins
bin="$root/target/$PROFILE"
work=$(mktemp -d /tmp/synapse-demo.XXXXXX)
echo "run: scratch directory $work"

# --- certificates --------------------------------------------------------------------------
ca="$work/ca"
"$bin/synapsectl" certs init "$ca" >/dev/null
"$bin/synapsectl" certs issue --ca-dir "$ca" --role hub --name synapse-hub --ip 127.0.0.1 >/dev/null
"$bin/synapsectl" certs issue --ca-dir "$ca" --role operator --name demo-operator >/dev/null
tiers=(edge regional cloud)
for t in "${tiers[@]}"; do
  "$bin/synapsectl" certs issue --ca-dir "$ca" --role agent --name "$t-1" >/dev/null
done
ctl() {
  "$bin/synapsectl" --hub https://127.0.0.1:17444 --ca "$ca/ca.pem" \
    --cert "$ca/demo-operator.pem" --key "$ca/demo-operator.key" "$@"
}

# --- processes and cleanup ------------------------------------------------------------------
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; exit 130' INT TERM
trap stop_all EXIT
wait_http() {
  for _ in $(seq 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done
  echo "run: $2 did not come up; its log: $3" >&2; tail -20 "$3" >&2; exit 1
}

# --- the hub ---------------------------------------------------------------------------------
cat > "$work/hub.toml" <<EOF
hub_id = "demo-hub"
data_dir = "$work/hub"
[tls]
ca = "$ca/ca.pem"
cert = "$ca/synapse-hub.pem"
key = "$ca/synapse-hub.key"
[link]
listen = "127.0.0.1:17443"
heartbeat_interval = "2s"
[console]
listen = "127.0.0.1:17444"
[metrics]
listen = "127.0.0.1:19465"
# Demo pace: rounds, plans and rollout steps in seconds rather than minutes.
[federation]
initial_model = "$work/forecaster.onnx"
round_interval = "20s"
round_timeout = "8s"
min_clients = 2
[placement]
optimization_interval = "15s"
[rollouts]
bake = "6s"
[rollouts.models]
steps = ["1/tier", "100%"]
bake = "6s"
EOF
# The federation's first model: the agents' pretrained neural forecaster, as an ONNX file.
# (A replay of the small 2021 sample writes it; the model does not depend on the trace.)
small_trace=$(ls "$root"/../shared/traces/azure2021-head/*.csv | head -n 1)
"$bin/synapse-agent" replay --trace "$small_trace" --save-model "$work/forecaster.onnx" \
  > "$work/replay-model.log" 2>&1 || { echo "run: writing the first model failed:" >&2; tail "$work/replay-model.log" >&2; exit 1; }
"$bin/synapse-hub" --config "$work/hub.toml" > "$work/hub.log" 2>&1 &
pids+=($!)
wait_http 127.0.0.1:19465/metrics hub "$work/hub.log"
echo "run: hub up (console https://127.0.0.1:17444, metrics http://127.0.0.1:19465/metrics)"

# --- functions -------------------------------------------------------------------------------
drive_args=(--trace "$TRACE" --functions "$FUNCTIONS" --minutes "$MINUTES" --speed "$SPEED" --seed 1)
"$bin/synapse-agent" drive "${drive_args[@]}" --gateway x --list > "$work/functions.tsv"
"$bin/synapse-sample-model" "$work/classifier.onnx" > "$work/classifier.sha256"

# Function sections of an agent's configuration, with `keep_alive` for the fixed policy.
functions_toml() {
  local keep_alive=$1 init=300
  while IFS=$'\t' read -r name hash invocations duration_ms memory_mb; do
    # The trace's execution time, compressed like its clock; memory from the trace, capped.
    local work_ms=$(awk -v d="$duration_ms" -v s="$SPEED" 'BEGIN { w = d / s; if (w < 1) w = 1; printf "%d", w }')
    local mem=$(awk -v m="$memory_mb" 'BEGIN { m = int(m); if (m < 32) m = 32; if (m > 256) m = 256; print m }')
    cat <<EOF
# Trace function ${hash:0:16}… ($invocations invocations in the trace window).
[[functions]]
name = "$name"
command = "$bin/synapse-sample-fn"
args = ["--init-ms", "$init", "--work-ms", "$work_ms"]
memory_mb = $mem
concurrency = 1
max_instances = 8
keep_alive = "$keep_alive"

EOF
    init=$(( init >= 800 ? 300 : init + 100 ))
  done < "$work/functions.tsv"
  cat <<EOF
# An ONNX classifier (x[N,4] -> softmax over 3 classes) served with tract, batched.
[[functions]]
name = "classify"
kind = "onnx"
model = "$work/classifier.onnx"
model_sha256 = "$(cat "$work/classifier.sha256")"
keep_alive = "$keep_alive"
[[functions.inputs]]
name = "x"
shape = [4]
[[functions.outputs]]
name = "logits"
transform = "softmax"
EOF
}

# Ten minutes of trace time, in wall seconds.
fixed_ttl=$(awk -v s="$SPEED" 'BEGIN { printf "%dms", 600000 / s }')

agent_toml() {
  local tier=$1 i=$2 phase=$3
  cat <<EOF
[agent]
id = "$tier-1"
tier = "$tier"
state_dir = "$work/$phase/$tier"
[telemetry]
# One interval per trace minute.
interval = "$(awk -v s="$SPEED" 'BEGIN { printf "%dms", 60000 / s }')"
[metrics]
listen = "127.0.0.1:1946$i"
[gateway]
listen = "127.0.0.1:1808$i"
[cgroup]
subtree = "synapse-demo-$tier"

EOF
  # The fleet run links every agent to the hub (federated rounds, placement, rollouts) and
  # its pools follow our forecast policy (the default); the baseline run has each agent alone
  # with each function's fixed keep-alive.
  if [ "$phase" = fleet ]; then
    cat <<EOF
[policy]
name = "forecast"

[link]
hub = "127.0.0.1:17443"
ca = "$ca/ca.pem"
cert = "$ca/$tier-1.pem"
key = "$ca/$tier-1.key"
heartbeat_interval = "2s"

EOF
  else
    cat <<EOF
[policy]
name = "fixed-keepalive"

EOF
  fi
  functions_toml "$fixed_ttl"
}

start_agents() {
  local phase=$1
  mkdir -p "$work/$phase"
  for i in 0 1 2; do
    local t=${tiers[$i]}
    agent_toml "$t" "$i" "$phase" > "$work/$phase/$t.toml"
    "$bin/synapse-agent" check-config "$work/$phase/$t.toml" >/dev/null
    "$bin/synapse-agent" run --config "$work/$phase/$t.toml" 2> "$work/$phase/$t.log" &
    agent_pids+=($!)
    pids+=($!)
  done
  for i in 0 1 2; do
    wait_http "127.0.0.1:1946$i/healthz" "agent ${tiers[$i]}" "$work/$phase/${tiers[$i]}.log"
  done
}

stop_agents() {
  for p in "${agent_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${agent_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  agent_pids=()
}

# --- the live view ---------------------------------------------------------------------------
metric_sum() { # URL NAME [LABEL-FILTER]: sum of a metric's samples
  curl -sf "$1/metrics" | awk -v n="$2" -v f="${3:-}" '
    index($0, n) == 1 && (f == "" || index($0, f)) && $1 !~ /_(bucket|created)/ { s += $NF }
    END { printf "%.6g", s + 0 }'
}
live_view() {
  local phase=$1
  while sleep 5; do
    echo
    echo "── $(date -u +%H:%M:%S) $phase ─────────────────────────────────────────────────────────"
    printf '  %-9s %8s %8s %8s %10s %6s %7s %9s\n' tier invoc warm cold "ebpf cs ms" warm# target forecast
    for i in 0 1 2; do
      local u="127.0.0.1:1946$i"
      local warm cold n sum
      warm=$(metric_sum "$u" synapse_invocations_total 'start="warm"')
      cold=$(metric_sum "$u" synapse_invocations_total 'start="cold"')
      n=$(metric_sum "$u" synapse_cold_start_seconds_count)
      sum=$(metric_sum "$u" synapse_cold_start_seconds_sum)
      printf '  %-9s %8.0f %8.0f %8.0f %10s %6.0f %7s %9s\n' "${tiers[$i]}" "$(awk -v a="$warm" -v b="$cold" 'BEGIN{print a+b}')" \
        "$warm" "$cold" "$(awk -v n="$n" -v s="$sum" 'BEGIN { if (n > 0) printf "%.0f", s / n * 1000; else print "-" }')" \
        "$(metric_sum "$u" synapse_warm_instances)" "$(metric_sum "$u" synapse_pool_target)" \
        "$(metric_sum "$u" synapse_forecast_invocations)"
    done
    ctl agents 2>/dev/null | sed 's/^/  /' | head -5 || true
    echo "  federated rounds (newest last):"
    ctl rounds list 2>/dev/null | tail -n 3 | sed 's/^/    /' || true
    echo "  placement plan:"
    ctl placement show 2>/dev/null | head -n 12 | sed 's/^/    /' || true
    echo "  rollouts:"
    ctl rollouts history 2>/dev/null | head -n 6 | sed 's/^/    /' || true
  done
}

# --- one run ---------------------------------------------------------------------------------
agent_pids=()
drive_phase() {
  local phase=$1
  start_agents "$phase"
  echo "run: $phase: agents up (gateways 127.0.0.1:18080-18082, metrics 127.0.0.1:19460-19462)"
  live_view "$phase" &
  local view=$!
  # The ONNX function is called now and then beside the trace's functions.
  ( while sleep 2; do
      curl -s -m 5 -o /dev/null -d '{"inputs":{"x":[0.5,1.0,-0.3,2.0]}}' 127.0.0.1:18080/v1/functions/classify/invoke || true
    done ) &
  local onnx=$!
  "$bin/synapse-agent" drive "${drive_args[@]}" \
    --gateway 127.0.0.1:18080 --gateway 127.0.0.1:18081 --gateway 127.0.0.1:18082 \
    --json "$work/$phase/drive.json" --progress 0 > "$work/$phase/drive.txt"
  kill "$view" "$onnx" 2>/dev/null || true
  wait "$view" "$onnx" 2>/dev/null || true
  # What the kernel measured, before the agents stop.
  for i in 0 1 2; do
    local u="127.0.0.1:1946$i"
    printf '%s\t%s\t%s\t%s\n' "${tiers[$i]}" "$(metric_sum "$u" synapse_cold_starts_total)" \
      "$(metric_sum "$u" synapse_cold_start_seconds_sum)" "$(metric_sum "$u" synapse_idle_memory_mb_seconds_total)"
  done > "$work/$phase/kernel.tsv"
  stop_agents
}

drive_phase fleet
drive_phase fixed-10m

# --- summary ---------------------------------------------------------------------------------
echo
echo "== summary: $MINUTES trace minutes of $FUNCTIONS functions at ${SPEED}x, seed 1 =="
python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
rows = []
for phase in ("fleet", "fixed-10m"):
    d = json.load(open(f"{work}/{phase}/drive.json"))
    k = [line.split("\t") for line in open(f"{work}/{phase}/kernel.tsv").read().split("\n") if line]
    cs = sum(float(x[1]) for x in k)
    cs_s = sum(float(x[2]) for x in k)
    idle = sum(float(x[3]) for x in k)
    rows.append((phase, d, cs, cs_s, idle))
print("fleet: three agents linked to the hub (federated rounds, placement and forwarding, rollouts),")
print("pools planned by the forecast policy; fixed-10m: the same agents alone, each idle instance")
print("kept 10 trace minutes.")
print(f"{'run':<12} {'sent':>6} {'answered':>8} {'warm':>6} {'cold':>6} {'cold %':>7} {'fwd':>5} {'failed':>6} {'eBPF cold starts':>16} {'mean ms':>8} {'idle MB·s':>10}")
for phase, d, cs, cs_s, idle in rows:
    mean = cs_s / cs * 1000 if cs else 0
    print(f"{phase:<12} {d['sent']:>6} {d['ok']:>8} {d['warm']:>6} {d['cold']:>6} {d['cold_pct']:>7.1f} {d['forwarded']:>5} {d['failed']:>6} {cs:>16.0f} {mean:>8.0f} {idle:>10.0f}")
EOF
echo "logs and configuration: $work"
