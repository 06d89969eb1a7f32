package mesh

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	t.Parallel()
	id := "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
	in := NodeMeta{
		PeerID: id,
		P2P:    []string{"/ip4/10.0.0.1/tcp/4001/p2p/" + id, "/ip4/10.0.0.2/tcp/4001", "/ip4/10.0.0.3/tcp/4001"},
		HTTP:   "10.0.0.1:8080", Region: "eu-west", Voter: true,
		GPUs: "2xA100-80GB,1xT4-16GB", Slots: 3, Inc: "1731000000-ab12",
	}
	b, err := EncodeMeta(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.V = MetaVersion
	want.P2P = []string{"/ip4/10.0.0.1/tcp/4001", "/ip4/10.0.0.2/tcp/4001"} // first two, /p2p dropped
	if !reflect.DeepEqual(out, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, want)
	}
	t.Logf("encoded %d bytes: %s", len(b), b)
}

func TestMetaTooLarge(t *testing.T) {
	t.Parallel()
	_, err := EncodeMeta(NodeMeta{GPUs: strings.Repeat("8xH100-80GB,", 50)})
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("EncodeMeta of a huge GPU summary: %v, want ErrMetaTooLarge", err)
	}
	for _, b := range [][]byte{nil, []byte("{"), []byte(`{"v":0}`)} {
		if _, err := DecodeMeta(b); err == nil {
			t.Errorf("DecodeMeta(%q) accepted", b)
		}
	}
	// Unknown fields from newer nodes are ignored.
	if m, err := DecodeMeta([]byte(`{"v":2,"id":"x","new":1}`)); err != nil || m.PeerID != "x" {
		t.Errorf("DecodeMeta of a newer version = %+v, %v", m, err)
	}
}

// TestOversizeMetaNeverPanics: memberlist panics on metadata above 512
// bytes; the mesh refuses it at New and at UpdateMeta and keeps gossiping
// the last good metadata.
func TestOversizeMetaNeverPanics(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.NodeMeta = nil
	cfg.Meta = func() []byte { return make([]byte, MaxMetaBytes+1) }
	if _, err := New(cfg); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("New with 513-byte meta: %v, want ErrMetaTooLarge", err)
	}

	size := MaxMetaBytes
	cfg = testConfig(t)
	cfg.NodeMeta = nil
	cfg.Meta = func() []byte { return []byte(strings.Repeat("m", size)) }
	a := startMesh(t, cfg)
	b := startMesh(t, testConfig(t))
	joinAll(t, []*Mesh{a, b})
	size = MaxMetaBytes + 100
	if err := a.UpdateMeta(); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("UpdateMeta with %d bytes: %v, want ErrMetaTooLarge", size, err)
	}
	for _, m := range b.Members() {
		if m.NodeID == cfg.NodeID && len(m.Meta) != MaxMetaBytes {
			t.Errorf("b sees %d bytes of a's meta, want the last good %d", len(m.Meta), MaxMetaBytes)
		}
	}

	big := testConfig(t)
	big.NodeMeta = func() NodeMeta { return NodeMeta{GPUs: strings.Repeat("8xH100-80GB,", 50)} }
	if _, err := New(big); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("New with a huge NodeMeta: %v", err)
	}
}
