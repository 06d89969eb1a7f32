package mesh

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func echo(_ context.Context, _ string, req []byte) ([]byte, error) { return req, nil }

func rpcPair(t *testing.T) (client, server *Mesh) {
	ms := startMeshes(t, 2, nil)
	if err := ms[0].AddPeer(ms[1].PeerID(), ms[1].P2PAddrs()); err != nil {
		t.Fatal(err)
	}
	return ms[0], ms[1]
}

func TestRPC(t *testing.T) {
	t.Parallel()
	client, server := rpcPair(t)
	server.Handle("/test/echo", func(ctx context.Context, from string, req []byte) ([]byte, error) {
		if from != client.PeerID() {
			return nil, errors.New("wrong caller " + from)
		}
		return append([]byte("re:"), req...), nil
	})
	server.Handle("/test/fail", func(context.Context, string, []byte) ([]byte, error) {
		return nil, errors.New("no such job")
	})
	handlerDeadline := make(chan time.Time, 1)
	server.Handle("/test/slow", func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		d, _ := ctx.Deadline()
		handlerDeadline <- d
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("round trip", func(t *testing.T) {
		big := bytes.Repeat([]byte("x"), 3<<20)
		for _, req := range [][]byte{[]byte("ping"), {}, big} {
			got, err := client.Call(ctx, server.PeerID(), "/test/echo", req)
			if err != nil || !bytes.Equal(got, append([]byte("re:"), req...)) {
				t.Fatalf("echo of %d bytes: %d bytes, %v", len(req), len(got), err)
			}
		}
	})
	t.Run("remote error", func(t *testing.T) {
		_, err := client.Call(ctx, server.PeerID(), "/test/fail", nil)
		var re *RemoteError
		if !errors.As(err, &re) || re.Message != "no such job" {
			t.Fatalf("err = %v, want RemoteError{no such job}", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		dctx, dcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer dcancel()
		_, err := client.Call(dctx, server.PeerID(), "/test/slow", nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		if d := <-handlerDeadline; d.IsZero() {
			t.Error("handler got no deadline from the caller")
		}
	})
	t.Run("oversize request", func(t *testing.T) {
		_, err := client.Call(ctx, server.PeerID(), "/test/echo", make([]byte, MaxRPCBytes+1))
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
	})
	t.Run("oversize frame refused by server", func(t *testing.T) {
		s, err := client.host.NewStream(ctx, peer.ID(mustDecode(t, server.PeerID())), "/test/echo")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[:4], MaxRPCBytes+1)
		if _, err := s.Write(hdr[:]); err != nil {
			t.Fatal(err)
		}
		var rh [5]byte
		if _, err := io.ReadFull(s, rh[:]); err == nil && rh[0] != statusErr {
			t.Errorf("server answered status %d to an oversize request", rh[0])
		}
	})
	t.Run("unknown protocol and peer", func(t *testing.T) {
		if _, err := client.Call(ctx, server.PeerID(), "/test/none", nil); err == nil {
			t.Error("call to an unhandled protocol succeeded")
		}
		if _, err := client.Call(ctx, "bogus", "/test/echo", nil); err == nil {
			t.Error("call to a bad peer ID succeeded")
		}
		server.Handle("/test/fail", nil)
		if _, err := client.Call(ctx, server.PeerID(), "/test/fail", nil); err == nil {
			t.Error("call to a removed handler succeeded")
		}
	})
}

func mustDecode(t *testing.T, s string) peer.ID {
	id, err := peer.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
