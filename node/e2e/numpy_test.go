package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/cas/bundle"
)

// numpyPython finds a Python that can import numpy (CI installs Debian's
// python3-numpy), or skips the test.
func numpyPython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if err := exec.Command(py, "-c", "import numpy").Run(); err == nil {
			return py
		}
	}
	t.Skip("no python3 with numpy here (CI installs python3-numpy)")
	return ""
}

// checkNumpy loads a RunBundle's arrays and a dataset with numpy itself.
func checkNumpy(t *testing.T, bundleTar, dataset []byte) {
	t.Helper()
	py := numpyPython(t)
	dir := t.TempDir()
	xhat, err := bundle.ReadFile(bytes.NewReader(bundleTar), "x_hat.npy")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"x_hat.npy": xhat, "dataset.npz": dataset, "bundle.tar": bundleTar} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := `
import json, sys, tarfile, numpy as np
d = sys.argv[1]
x = np.load(d + "/x_hat.npy")
assert x.dtype == np.float64 and x.ndim == 2 and x.shape[0] == x.shape[1], (x.dtype, x.shape)
assert 0.0 <= x.min() and x.max() <= 1.0, (x.min(), x.max())
z = np.load(d + "/dataset.npz")
n = x.size
assert z["x_gt"].shape == x.shape, z["x_gt"].shape
assert z["y"].ndim == 1 and z["y_cal"].shape == (5, z["y"].shape[0]), z["y_cal"].shape
assert list(z["cal_levels"]) == [0.2, 0.4, 0.6, 0.8, 1.0], z["cal_levels"]
with tarfile.open(d + "/bundle.tar") as tf:
    names = tf.getnames()
    assert names[0] == "runbundle_manifest.json", names
    m = json.load(tf.extractfile(names[0]))
    assert m["version"] == "0.3.0" and m["artifacts"], m
print("numpy ok", x.shape, z["y"].shape)
`
	out, err := exec.Command(py, "-c", script, dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "numpy ok") {
		t.Fatalf("numpy could not read pwmesh's arrays: %v\n%s", err, out)
	}
}
