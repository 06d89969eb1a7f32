package workload

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakePython writes an executable that prints out, standing in for a
// python3 with PyTorch on a machine without a GPU.
func fakePython(t *testing.T, out string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "python3")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho '"+out+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func selfTest(t *testing.T) (*Result, error) {
	p, err := ParseParams(TypeGPUSelfTest, []byte(`{"matrix":256,"repeats":2}`))
	if err != nil {
		t.Fatal(err)
	}
	return Run(context.Background(), Request{Type: TypeGPUSelfTest, Params: p})
}

func TestSelfTestRecordsTheMeasurement(t *testing.T) {
	t.Setenv("PWMESH_PYTHON", fakePython(t, `{"device":"NVIDIA H200","devices_visible":1,"torch":"2.5.0","cuda":"12.4","seconds":0.5,"tflops":51.2,"max_rel_error":3e-7}`))
	res, err := selfTest(t)
	if err != nil {
		t.Fatal(err)
	}
	if res.Metrics["gpu_device"] != "NVIDIA H200" || res.Metrics["matmul_tflops"] != 51.2 || res.Artifacts["selftest.json"] == nil {
		t.Fatalf("metrics %v", res.Metrics)
	}
}

func TestSelfTestRefusesAWrongProduct(t *testing.T) {
	t.Setenv("PWMESH_PYTHON", fakePython(t, `{"device":"bad","tflops":1,"max_rel_error":0.5}`))
	if _, err := selfTest(t); err == nil || !strings.Contains(err.Error(), "wrong") {
		t.Fatalf("err = %v", err)
	}
}

func TestSelfTestSaysWhatIsMissing(t *testing.T) {
	t.Setenv("PWMESH_PYTHON", fakePython(t, `{"error":"PyTorch sees no CUDA device"}`))
	if _, err := selfTest(t); err == nil || !strings.Contains(err.Error(), "no CUDA device") {
		t.Fatalf("err = %v", err)
	}
}

// TestSelfTestScriptWithoutTorch runs the real script under this machine's
// python3: without PyTorch (or a GPU) it must say so, not crash.
func TestSelfTestScriptWithoutTorch(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 here")
	}
	if exec.Command(py, "-c", "import torch; assert torch.cuda.is_available()").Run() == nil {
		t.Skip("this machine has PyTorch with a GPU: make gpu-check covers it")
	}
	t.Setenv("PWMESH_PYTHON", py)
	_, err = selfTest(t)
	if err == nil || !(strings.Contains(err.Error(), "PyTorch is not installed") || strings.Contains(err.Error(), "no CUDA device")) {
		t.Fatalf("err = %v", err)
	}
}

func TestSelfTestParams(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{`{"matrix":8}`, `{"matrix":99999}`, `{"repeats":0}`, `{"size":64}`} {
		if _, err := ParseParams(TypeGPUSelfTest, []byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	p, err := ParseParams(TypeGPUSelfTest, nil)
	if err != nil || p.Matrix != DefaultMatrix || p.Repeats != DefaultRepeats {
		t.Fatalf("defaults %+v %v", p, err)
	}
}
