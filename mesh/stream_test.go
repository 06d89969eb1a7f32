package mesh

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func TestStream(t *testing.T) {
	t.Parallel()
	client, server := rpcPair(t)
	content := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	server.HandleStream("/test/blob/1", func(_ context.Context, _ string, req []byte) (io.ReadCloser, error) {
		switch string(req) {
		case "blob":
			return io.NopCloser(bytes.NewReader(content)), nil
		default:
			return nil, errors.New("no such blob")
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc, err := client.OpenStream(ctx, server.PeerID(), "/test/blob/1", []byte("blob"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read %d bytes, err %v", len(got), err)
	}
	_, err = client.OpenStream(ctx, server.PeerID(), "/test/blob/1", []byte("other"))
	var re *RemoteError
	if !errors.As(err, &re) || re.Message != "no such blob" {
		t.Fatalf("missing blob: %v", err)
	}
	// Closing early ends the stream without reading it all.
	rc, err = client.OpenStream(ctx, server.PeerID(), "/test/blob/1", []byte("blob"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Logf("early close: %v", err)
	}
	if _, err := client.OpenStream(ctx, server.PeerID(), "/test/none/1", nil); err == nil {
		t.Fatal("unknown protocol answered")
	}
}
