package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

func TestListNodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do("GET", "/nodes", e.acme, nil)
	if r.status != 200 || strings.TrimSpace(string(r.body)) != `{"nodes":[]}` {
		t.Fatalf("no nodes: %d %s", r.status, r.body)
	}
	for _, n := range []scheduler.Node{
		{ID: "a", Region: "eu", Voter: true, GPUs: []scheduler.GPU{{Index: 0, UUID: "GPU-a0", Model: "H100", MemoryMB: 81920, Utilization: 0.5},
			{Index: 1, UUID: "GPU-a1", Model: "H100", MemoryMB: 81920, MemoryUsedMB: 512, TemperatureC: 66, Unhealthy: "XID 79"}}},
		{ID: "b", Region: "eu", Voter: true},
		{ID: "c", Region: "us", Voter: false, State: scheduler.NodeDown},
	} {
		e.apply(&scheduler.RegisterNode{At: testNow, Node: n})
	}
	e.cluster.set(web.Health{Node: "n1", Leader: "b", Role: "follower", Members: 3, Ready: true})
	r = e.do("GET", "/nodes", e.acme, nil)
	wantStatus(t, r, http.StatusOK)
	want := `{"nodes":[` +
		`{"id":"a","region":"eu","pool":"shared","role":"follower","state":"ready","gpus":[` +
		`{"index":0,"model":"H100","memory_mb":81920,"utilization":0.5,"uuid":"GPU-a0","memory_used_mb":0,"temperature_c":0,"healthy":true},` +
		`{"index":1,"model":"H100","memory_mb":81920,"utilization":0,"uuid":"GPU-a1","memory_used_mb":512,"temperature_c":66,"healthy":false,"problem":"XID 79"}]},` +
		`{"id":"b","region":"eu","pool":"shared","role":"leader","state":"ready","gpus":[]},` +
		`{"id":"c","region":"us","pool":"shared","role":"worker","state":"down","gpus":[]}]}`
	if got := strings.TrimSpace(string(r.body)); got != want {
		t.Fatalf("nodes\n got %s\nwant %s", got, want)
	}
}
