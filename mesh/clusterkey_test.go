package mesh

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestClusterKeyRoundTrip(t *testing.T) {
	t.Parallel()
	k := GenerateClusterKey()
	if !bytes.HasSuffix(k, []byte("\n")) {
		t.Errorf("key file %q lacks a final newline", k)
	}
	raw, err := ParseClusterKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != ClusterKeySize {
		t.Fatalf("raw key is %d bytes", len(raw))
	}
	if bytes.Equal(k, GenerateClusterKey()) {
		t.Error("two generated keys are equal")
	}
	s, err := deriveClusterSecrets(k)
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := deriveClusterSecrets(raw); err != nil || !bytes.Equal(s.psk, s2.psk) || !bytes.Equal(s.gossipKey, s2.gossipKey) {
		t.Errorf("the raw key derives other secrets than its file: %v", err)
	}
	if len(s.psk) != 32 || len(s.gossipKey) != 32 || bytes.Equal(s.psk, s.gossipKey) || bytes.Equal(s.psk, raw) {
		t.Error("derived keys are not two distinct 32-byte keys")
	}
}

func TestParseClusterKeyErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
	}{
		{"", "empty"},
		{"  \n", "empty"},
		{"not base64!!", "base64"},
		{base64.StdEncoding.EncodeToString(make([]byte, 16)), "16 bytes, want 32"},
	} {
		_, err := ParseClusterKey([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseClusterKey(%q) = %v, want error naming %q", tc.in, err, tc.want)
		}
	}
	if _, err := New(Config{DataDir: t.TempDir(), NodeID: "x", ClusterKey: []byte("short")}); err == nil {
		t.Error("New accepted a bad cluster key")
	}
}

// TestPrivateMesh is the issue's "a node without the key cannot join or
// read gossip": two meshes with one key join, call and gossip; a mesh
// without the key, or with another key, can neither join memberlist nor
// open a libp2p stream to them.
func TestPrivateMesh(t *testing.T) {
	t.Parallel()
	key := GenerateClusterKey()
	raw, err := ParseClusterKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyed := []*Mesh{ // one given the file's contents, one the raw key
		startMeshes(t, 1, func(c *Config) { c.ClusterKey = key })[0],
		startMeshes(t, 1, func(c *Config) { c.ClusterKey = raw })[0],
	}
	joinAll(t, keyed)
	a, b := keyed[0], keyed[1]
	a.Handle("/test/echo", echo)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := b.Call(ctx, a.PeerID(), "/test/echo", []byte("hi")); err != nil || string(got) != "hi" {
		t.Fatalf("keyed call = %q, %v", got, err)
	}
	msgs, err := a.Subscribe(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "b sees a on the topic", func() bool { return len(b.TopicPeers("jobs")) == 1 })
	if err := b.Publish(ctx, "jobs", []byte("job-1")); err != nil {
		t.Fatal(err)
	}
	if m := <-msgs; string(m.Data) != "job-1" || m.From != b.PeerID() {
		t.Fatalf("got %+v", m)
	}

	outsiders := map[string]Config{"no key": testConfig(t), "other key": testConfig(t)}
	other := outsiders["other key"]
	other.ClusterKey = GenerateClusterKey()
	outsiders["other key"] = other
	for name, cfg := range outsiders {
		o := startMesh(t, cfg)
		// The outsider knows a's addresses and peer ID, as an attacker would.
		if err := o.AddPeer(a.PeerID(), a.P2PAddrs()); err != nil {
			t.Fatal(err)
		}
		jctx, jcancel := context.WithTimeout(ctx, time.Second)
		n, err := o.Join(jctx, []string{a.GossipAddr()})
		jcancel()
		if err == nil || n != 0 || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: Join = %d, %v; want refusal until the deadline", name, n, err)
		}
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		_, err = o.Call(cctx, a.PeerID(), "/test/echo", []byte("hi"))
		ccancel()
		if err == nil {
			t.Errorf("%s: Call to a keyed mesh succeeded", name)
		}
		if len(o.Members()) != 1 {
			t.Errorf("%s: outsider sees members %v", name, o.Members())
		}
		for _, mem := range a.Members() {
			if mem.NodeID == cfg.NodeID {
				t.Errorf("%s: keyed mesh lists the outsider", name)
			}
		}
		if len(o.ConnectedPeers()) != 0 {
			t.Errorf("%s: outsider holds libp2p connections %v", name, o.ConnectedPeers())
		}
	}
	// The keyed members also refuse to join the outsiders' side.
	jctx, jcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer jcancel()
	open := startMesh(t, testConfig(t))
	if _, err := a.Join(jctx, []string{open.GossipAddr()}); err == nil {
		t.Error("keyed mesh joined an open one")
	}
}
