#!/usr/bin/env bash
# perf_analyzer against a local Triton: backbone and temporal head, HTTP and gRPC, concurrency 1..8,
# dynamic batching on (the exported config) vs off (a variant without dynamic_batching), in one run.
# Writes one CSV per case under benchmarks/results/triton_perf/ and a summary (JSON + Markdown table).
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

# The "off" variant: the same models and configs without dynamic_batching.
VARIANT=$(mktemp -d)
trap 'rm -rf "$VARIANT"; [ -n "${TRITON_PID:-}" ] && kill "$TRITON_PID" 2>/dev/null || true' EXIT
"$PY" -m benchmarks.triton_perf_report variant "$REPOSITORY" "$VARIANT"

eval "$("$PY" -m benchmarks.triton_perf_report env)"   # PERF_ANALYZER, LD_LIBRARY_PATH, TRITON_* paths

for batching in on off; do
  repo=$REPOSITORY; [ "$batching" = off ] && repo=$VARIANT
  HTTP_PORT=18000; GRPC_PORT=18001
  "$TRITONSERVER" --model-repository="$(realpath "$repo")" --backend-directory="$TRITON_BACKENDS" \
    --model-config-name=cpu --http-address=127.0.0.1 --http-port=$HTTP_PORT --grpc-address=127.0.0.1 \
    --grpc-port=$GRPC_PORT --allow-metrics=false --disable-auto-complete-config > "$OUT/tritonserver-$batching.log" 2>&1 &
  TRITON_PID=$!
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$HTTP_PORT/v2/health/ready" >/dev/null && break
    kill -0 "$TRITON_PID" 2>/dev/null || { tail -40 "$OUT/tritonserver-$batching.log"; exit 1; }
    sleep 0.25
  done
  curl -sf "http://127.0.0.1:$HTTP_PORT/v2/health/ready" >/dev/null || { tail -40 "$OUT/tritonserver-$batching.log"; exit 1; }
  for protocol in http grpc; do
    url=127.0.0.1:$HTTP_PORT; [ "$protocol" = grpc ] && url=127.0.0.1:$GRPC_PORT
    for model in deepfake_backbone deepfake_temporal; do
      shape="faces:$("$PY" -m benchmarks.triton_perf_report size "$REPOSITORY"),3"
      [ "$model" = deepfake_temporal ] && shape="features:30,2048"   # 30-frame clips, as the service sends
      for c in $CONCURRENCY; do
        echo "== batching $batching, $protocol, $model, concurrency $c" >&2
        "$PERF_ANALYZER" -m "$model" -u "$url" -i "$protocol" --shape "$shape" -b 1 \
          --concurrency-range "$c:$c" --measurement-interval "$INTERVAL_MS" --stability-percentage 50 \
          --max-trials 10 -f "$OUT/${batching}_${protocol}_${model}_c${c}.csv" > "$OUT/last_run.txt" \
          || echo "   no stable measurement (shared machine?): case left out of the table" >&2
      done
    done
  done
  kill "$TRITON_PID"; wait "$TRITON_PID" 2>/dev/null || true; TRITON_PID=
done
"$PY" -m benchmarks.triton_perf_report summarise "$OUT"
