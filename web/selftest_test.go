package web_test

import (
	"net/http"
	"testing"
)

// TestGPUSelfTestRequest: gpu_selftest needs a GPU and takes no dataset.
func TestGPUSelfTestRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.unchanged(func() {
		wantError(t, e.doJSON("POST", "/jobs", e.globex, map[string]any{"type": "gpu_selftest"}), http.StatusBadRequest, "invalid_resources")
	})
	j := e.submit(e.globex, map[string]any{"type": "gpu_selftest", "resources": map[string]any{"gpus": 1}})
	if j.Type != "gpu_selftest" || j.Resources.GPUs != 1 || j.Dataset != "" {
		t.Fatalf("job %+v", j)
	}
}
