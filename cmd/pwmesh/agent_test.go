package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An agent outside --dev without a cluster key would open the mesh to
// anyone who reaches its ports: it refuses to start, exit 2, naming the fix.
func TestAgentRefusesAnOpenMesh(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	r := cli(t, "", nil, "agent", "--data-dir", dir, "--http", "127.0.0.1:0", "--p2p-port", "0", "--gossip-port", "0")
	r.wantCode(t, 2)
	if !strings.HasPrefix(r.stderr, "pwmesh: ") || !strings.Contains(r.stderr, "--cluster-key") || !strings.Contains(r.stderr, "pwmesh keygen") {
		t.Fatalf("stderr %q: want a message naming --cluster-key and pwmesh keygen", r.stderr)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a refused start created its data dir: %v", err)
	}
}
