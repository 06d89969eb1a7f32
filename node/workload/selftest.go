package workload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// selfTestScript multiplies two seeded random float32 matrices on the first
// visible CUDA device, times the product, and checks a corner of it against
// a float64 product on the CPU. It prints one JSON line.
const selfTestScript = `
import json, sys, time
n, reps = int(sys.argv[1]), int(sys.argv[2])
try:
    import torch
except Exception as e:
    print(json.dumps({"error": "PyTorch is not installed: %s" % e})); sys.exit(3)
if not torch.cuda.is_available():
    print(json.dumps({"error": "PyTorch sees no CUDA device"})); sys.exit(3)
torch.backends.cuda.matmul.allow_tf32 = False
g = torch.Generator(device="cpu").manual_seed(20261126)
a = torch.randn(n, n, generator=g).cuda()
b = torch.randn(n, n, generator=g).cuda()
c = a @ b
torch.cuda.synchronize()
t0 = time.perf_counter()
for _ in range(reps):
    c = a @ b
torch.cuda.synchronize()
dt = time.perf_counter() - t0
k = min(n, 256)
ref = a[:k].double().cpu() @ b[:, :k].double().cpu()
err = ((c[:k, :k].double().cpu() - ref).abs().max() / ref.abs().max()).item()
print(json.dumps({"device": torch.cuda.get_device_name(0), "devices_visible": torch.cuda.device_count(),
    "torch": torch.__version__, "cuda": torch.version.cuda, "matrix": n, "repeats": reps,
    "seconds": dt, "tflops": 2.0 * n ** 3 * reps / dt / 1e12, "max_rel_error": err}))
`

// selfTestTolerance bounds the relative error of the GPU's float32 product.
const selfTestTolerance = 1e-3

// pythons are tried in order when $PWMESH_PYTHON is unset.
var pythons = []string{"python3", "/usr/bin/python3", "/usr/local/bin/python3", "/opt/conda/bin/python3"}

// gpuSelfTest runs selfTestScript on the job's GPU (the executor sets
// CUDA_VISIBLE_DEVICES to the lease's GPUs) and records what it measured.
func (j *job) gpuSelfTest() error {
	py := os.Getenv("PWMESH_PYTHON")
	for _, c := range pythons {
		if py != "" {
			break
		}
		if p, err := exec.LookPath(c); err == nil {
			py = p
		}
	}
	if py == "" {
		return errors.New("gpu_selftest needs python3 with PyTorch on the node (set PWMESH_PYTHON to its path)")
	}
	j.logf("gpu_selftest: %d×%d float32 product ×%d with %s (CUDA_VISIBLE_DEVICES=%q)", j.p.Matrix, j.p.Matrix, j.p.Repeats, py, os.Getenv("CUDA_VISIBLE_DEVICES"))
	cmd := exec.CommandContext(j.ctx, py, "-c", selfTestScript, strconv.Itoa(j.p.Matrix), strconv.Itoa(j.p.Repeats))
	var out bytes.Buffer
	cmd.Stdout = &out
	if j.req.Log != nil {
		cmd.Stderr = j.req.Log
	}
	runErr := cmd.Run()
	if err := j.ctx.Err(); err != nil {
		return err
	}
	line := strings.TrimSpace(out.String())
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	var r struct {
		Error          string  `json:"error"`
		Device         string  `json:"device"`
		DevicesVisible int     `json:"devices_visible"`
		Torch          string  `json:"torch"`
		CUDA           string  `json:"cuda"`
		Seconds        float64 `json:"seconds"`
		TFLOPS         float64 `json:"tflops"`
		MaxRelError    float64 `json:"max_rel_error"`
	}
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		return fmt.Errorf("gpu_selftest: %s did not answer (%v): %q", py, runErr, line)
	}
	if r.Error != "" {
		return fmt.Errorf("gpu_selftest: %s", r.Error)
	}
	if runErr != nil {
		return fmt.Errorf("gpu_selftest: %w", runErr)
	}
	m := j.res.Metrics
	m["gpu_device"], m["gpu_devices_visible"] = r.Device, float64(r.DevicesVisible)
	m["torch_version"], m["cuda_version"] = r.Torch, r.CUDA
	m["matmul_seconds"], m["matmul_tflops"], m["max_rel_error"] = r.Seconds, r.TFLOPS, r.MaxRelError
	j.res.Artifacts["selftest.json"] = append([]byte(line), '\n')
	j.logf("gpu_selftest: %s: %.1f TFLOP/s, max relative error %.2e", r.Device, r.TFLOPS, r.MaxRelError)
	if !(r.MaxRelError <= selfTestTolerance) {
		return fmt.Errorf("gpu_selftest: the GPU's product is wrong: relative error %.3g > %.0e", r.MaxRelError, selfTestTolerance)
	}
	return nil
}
