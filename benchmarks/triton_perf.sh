#!/usr/bin/env bash
# perf_analyzer against local Triton servers: backbone and temporal head, HTTP and gRPC, concurrency
# 1..8, dynamic batching on (the exported config) vs off (a variant without dynamic_batching).
# Both servers run at once and each case is measured on both back to back, so a load change on a
# shared machine hits both sides alike. Writes one CSV per case under benchmarks/results/triton_perf/
# and a summary (JSON + Markdown table).
#   benchmarks/triton_perf.sh [REPOSITORY]        (CONCURRENCY="1 2 4 8" INTERVAL_MS=3000 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
REPOSITORY=${1:-model_repository}
CONCURRENCY=${CONCURRENCY:-"1 2 4 8"}
INTERVAL_MS=${INTERVAL_MS:-3000}
OUT=benchmarks/results/triton_perf
mkdir -p "$OUT"
rm -f "$OUT"/*.csv

VARIANT=$(mktemp -d)   # the "off" variant: same models and configs without dynamic_batching
PIDS=()
trap 'rm -rf "$VARIANT"; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
"$PY" -m benchmarks.triton_perf_report variant "$REPOSITORY" "$VARIANT"
eval "$("$PY" -m benchmarks.triton_perf_report env)"   # PERF_ANALYZER, TRITONSERVER, TRITON_BACKENDS, LD_LIBRARY_PATH
FACES="faces:$("$PY" -m benchmarks.triton_perf_report size "$REPOSITORY"),3"

start() {  # start NAME REPOSITORY HTTP_PORT GRPC_PORT METRICS_PORT (the launcher holds Triton's arguments)
  "$PY" -m deploy.triton_local.server --repository "$2" --http-port "$3" --grpc-port "$4" --metrics-port "$5" \
    > "$OUT/tritonserver-$1.log" 2>&1 &
  PIDS+=($!)   # SIGTERM to the launcher stops its tritonserver
}
wait_ready() {  # wait_ready NAME HTTP_PORT
  for _ in $(seq 1 720); do
    curl -sf "http://127.0.0.1:$2/v2/health/ready" >/dev/null && return 0
    sleep 0.25
  done
  tail -40 "$OUT/tritonserver-$1.log"; exit 1
}
# one after the other: each launcher prepares the shared Triton backends folder, and a second one
# starting meanwhile found the Python stub missing and failed to load its models
start on "$REPOSITORY" 18000 18001 18002
wait_ready on 18000
start off "$VARIANT" 18100 18101 18102
wait_ready off 18100

for model in deepfake_backbone deepfake_temporal; do
  shape=$FACES; [ "$model" = deepfake_temporal ] && shape="features:30,2048"   # 30-frame clips, as the service sends
  for protocol in grpc http; do
    for c in $CONCURRENCY; do
      for batching in off on; do
        base=18000; [ "$batching" = off ] && base=18100
        port=$base; [ "$protocol" = grpc ] && port=$((base + 1))
        echo "== $model, $protocol, concurrency $c, batching $batching" >&2
        "$PERF_ANALYZER" -m "$model" -u "127.0.0.1:$port" -i "$protocol" --shape "$shape" -b 1 \
          --concurrency-range "$c:$c" --measurement-interval "$INTERVAL_MS" --stability-percentage 50 \
          --max-trials 10 -f "$OUT/${batching}_${protocol}_${model}_c${c}.csv" > "$OUT/last_run.txt" \
          || echo "   no stable measurement (shared machine?): case left out of the table" >&2
      done
    done
  done
done
"$PY" -m benchmarks.triton_perf_report summarise "$OUT"
