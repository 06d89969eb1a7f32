package mesh

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIdentityPersistsAcrossRestart(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	m1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id1 := m1.PeerID()
	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(cfg.DataDir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %#o, want 0600", st.Mode().Perm())
	}
	m2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if m2.PeerID() != id1 {
		t.Errorf("peer ID changed across restart: %s then %s", id1, m2.PeerID())
	}
	if got, err := PeerIDOf(cfg.DataDir); err != nil || got != id1 {
		t.Errorf("PeerIDOf = %q, %v; want %q", got, err, id1)
	}
	for _, a := range m2.P2PAddrs() {
		if !strings.HasSuffix(a, "/p2p/"+id1) {
			t.Errorf("P2P address %s lacks /p2p/%s", a, id1)
		}
	}
}

func TestIdentityRefusesBadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := LoadIdentity(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, IdentityFile)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: err = %v, want a refusal", err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(dir); err == nil {
		t.Error("garbage key accepted")
	}
	if _, err := LoadIdentity(""); err == nil {
		t.Error("empty data dir accepted")
	}
}
