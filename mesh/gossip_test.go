package mesh

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestPublishSubscribe(t *testing.T) {
	t.Parallel()
	ms := startMeshes(t, 3, nil)
	joinAll(t, ms) // metadata → peerstore → connections
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	subs := make([]<-chan Message, len(ms))
	for i, m := range ms {
		var err error
		if subs[i], err = m.Subscribe(ctx, "gpu/A100"); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms {
		waitFor(t, 10*time.Second, "topic peers", func() bool { return len(m.TopicPeers("gpu/A100")) == 2 })
	}
	big := bytes.Repeat([]byte{7}, MaxMessageBytes) // the largest allowed payload travels
	for _, payload := range [][]byte{[]byte("job-42"), big} {
		if err := ms[0].Publish(ctx, "gpu/A100", payload); err != nil {
			t.Fatal(err)
		}
		for i, ch := range subs { // the publisher gets its own message too
			select {
			case msg := <-ch:
				if !bytes.Equal(msg.Data, payload) || msg.From != ms[0].PeerID() {
					t.Errorf("sub %d got %d bytes from %s", i, len(msg.Data), msg.From)
				}
			case <-ctx.Done():
				t.Fatalf("sub %d: no message of %d bytes", i, len(payload))
			}
		}
	}
	if err := ms[1].Publish(ctx, "gpu/A100", make([]byte, MaxMessageBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversize publish: %v, want ErrTooLarge", err)
	}
	if err := ms[1].Publish(ctx, "nobody-listens", []byte("x")); err != nil {
		t.Errorf("publish with no subscribers: %v", err)
	}
}

func TestSubscriptionClosesWithContext(t *testing.T) {
	t.Parallel()
	m := startMesh(t, testConfig(t))
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := m.Subscribe(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	// A second subscription to the same topic works too.
	ch2, err := m.Subscribe(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range ch {
	}
	_ = m.Close()
	for range ch2 { // closes with the mesh
	}
	if _, err := m.Subscribe(context.Background(), "t"); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	if err := m.Publish(context.Background(), "t", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
}
