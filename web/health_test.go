package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/web"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do("GET", "/health", "", nil)
	wantStatus(t, r, http.StatusOK)
	if got := strings.TrimSpace(string(r.body)); got != `{"status":"ok","node":"n1","leader":"n1","role":"leader","members":1}` {
		t.Fatalf("health %s", got)
	}
	if r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Pwmesh-Node") != "n1" {
		t.Fatalf("headers %v", r.header)
	}
	e.cluster.set(web.Health{Node: "n1", Role: "follower", Members: 3, Ready: false})
	r = e.do("GET", "/health", "", nil)
	wantStatus(t, r, http.StatusServiceUnavailable)
	if got := strings.TrimSpace(string(r.body)); got != `{"status":"unavailable","node":"n1","leader":"","role":"follower","members":3}` {
		t.Fatalf("health %s", got)
	}
}
