#!/usr/bin/env bash
# make gpu-check: on a machine with an NVIDIA GPU, start a dev node with
# --gpus auto, show the inventory and telemetry from GET /nodes, run a
# gpu_selftest job (a timed, checked PyTorch matrix product on the job's GPU)
# and a built-in workload job on a GPU, and check the GPU-minutes recorded.
# Needs bin/pwmesh (make build); no Go toolchain on the GPU machine.
set -u
bin=${PWMESH_BIN:-bin/pwmesh}
d=${GPU_CHECK_DIR:-/tmp/pwmesh-gpu-check}
port=${GPU_CHECK_PORT:-18080}
fail=0
check() { if "$@"; then echo "ok: $*"; else echo "FAILED: $*"; fail=1; fi; }

test -x "$bin" || { echo "$bin is missing: run make build first"; exit 1; }
rm -rf "$d"; mkdir -p "$d"
echo "== nvidia-smi"; nvidia-smi --query-gpu=index,name,uuid,memory.total,temperature.gpu,utilization.gpu --format=csv || echo "nvidia-smi: not found"
echo "== python"; command -v python3 && python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' || true

"$bin" agent --dev --gpus "${GPU_CHECK_GPUS:-auto}" --executor process --data-dir "$d/data" --http 127.0.0.1:$port --p2p-port 0 --gossip-port 0 >"$d/out.log" 2>"$d/agent.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 1 120); do grep -q "is ready" "$d/out.log" 2>/dev/null && break; sleep 0.5; done
export PWMESH_ADDR=http://127.0.0.1:$port PWMESH_TOKEN=$(cat "$d/data/bootstrap-token")
sleep 6 # one telemetry sample written to the state
echo "== GET /nodes"; curl -s -H "Authorization: Bearer $PWMESH_TOKEN" "$PWMESH_ADDR/nodes"; echo
"$bin" nodes

echo "== gpu_selftest job"
id=$("$bin" job submit --type gpu_selftest --gpus 1 --param matrix=8192 --param repeats=50)
"$bin" job wait "$id" --timeout 300s; rc=$?
"$bin" job get "$id" --json > "$d/selftest.json"; cat "$d/selftest.json"; echo
check test $rc -eq 0
check grep -q '"matmul_tflops"' "$d/selftest.json"
"$bin" job logs "$id" | tail -5

echo "== built-in workload on a GPU"
id2=$("$bin" job submit --type generate_dataset --param size=64 --gpus 1)
"$bin" job wait "$id2" --timeout 120s; check test $? -eq 0

echo "== usage"
"$bin" usage --json > "$d/usage.json"; cat "$d/usage.json"; echo
check python3 -c "import json,sys; u=json.load(open('$d/usage.json')); sys.exit(0 if u['gpu_minutes'] > 0 else 1)"
echo "== agent log (gpu lines)"; grep -i "gpu\|nvml" "$d/agent.log" | head -8
exit $fail
