package fetch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/castest"
	"github.com/pwmesh/pwmesh/cas/fsstore"
)

// mapSource serves content from a map, optionally lying about it.
type mapSource struct {
	data  map[string][]byte
	lie   bool
	calls int
}

func (m *mapSource) Fetch(_ context.Context, c cid.Cid) (io.ReadCloser, error) {
	m.calls++
	b, ok := m.data[c.String()]
	if !ok {
		return nil, cas.ErrNotFound
	}
	if m.lie {
		b = append([]byte("x"), b...)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func newLocal(t *testing.T) cas.Store {
	s, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBehavesAsAStore(t *testing.T) {
	t.Parallel()
	castest.TestStore(t, func(t *testing.T) cas.Store {
		return New(newLocal(t), &mapSource{data: map[string][]byte{}}, nil)
	})
}

func TestFetchesMissesAndVerifies(t *testing.T) {
	t.Parallel()
	content := []byte("a RunBundle stored on another node")
	ref := cas.SumBytes(content)
	src := &mapSource{data: map[string][]byte{ref.CID.String(): content}}
	s := New(newLocal(t), src, nil)
	f, err := s.Open(context.Background(), ref.CID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, content) || src.calls != 1 {
		t.Fatalf("got %q after %d fetches", got, src.calls)
	}
	// Now local: no second fetch.
	if _, err := s.Stat(context.Background(), ref.CID); err != nil || src.calls != 1 {
		t.Fatalf("stat: %v, %d fetches", err, src.calls)
	}
	// A source that sends the wrong bytes is refused; nothing is kept.
	other := []byte("other content")
	oref := cas.SumBytes(other)
	liar := &mapSource{data: map[string][]byte{oref.CID.String(): other}, lie: true}
	s2 := New(newLocal(t), liar, nil)
	if _, err := s2.Open(context.Background(), oref.CID); !errors.Is(err, cas.ErrCorrupt) {
		t.Fatalf("wrong bytes: %v, want ErrCorrupt", err)
	}
	if ok, _ := s2.Has(context.Background(), oref.CID); ok {
		t.Fatal("refused content was kept")
	}
	if _, err := s2.Open(context.Background(), cas.SumBytes([]byte("nowhere")).CID); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("missing everywhere: %v", err)
	}
}
