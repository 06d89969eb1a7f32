package web_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
)

// wantQuota checks a 429 quota_exceeded answer whose message names every
// one of names.
func wantQuota(t testing.TB, r resp, names ...string) {
	t.Helper()
	wantError(t, r, http.StatusTooManyRequests, "quota_exceeded")
	for _, n := range names {
		if !strings.Contains(string(r.body), n) {
			t.Errorf("message %s does not name %q", r.body, n)
		}
	}
}

// setStorageQuota overrides a tenant's storage quota.
func (e *env) setStorageQuota(tenant string, bytes float64) {
	e.t.Helper()
	e.apply(&scheduler.SetTenant{At: testNow, Tenant: tenant, Quotas: map[string]*float64{scheduler.QuotaStorage: &bytes}})
}

// chunked hides a body's length: the client sends it chunked.
type chunked struct{ io.Reader }

// An upload whose declared length would take the tenant past its storage
// quota, and any upload at or over it, is refused before its body is
// stored; one of no declared length is stored, refused by the FSM, and its
// object, referenced by nothing, left to garbage collection.
func TestUploadStorageQuota(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setStorageQuota("acme", 1000)
	upload := func(key string, body io.Reader) resp {
		return e.do("POST", "/datasets?name=d", key, body, "Content-Type", "application/octet-stream")
	}
	e.upload(e.acme, "a", bytes.Repeat([]byte("a"), 600))
	e.unchanged(func() {
		wantQuota(t, upload(e.acme, bytes.NewReader(bytes.Repeat([]byte("b"), 401))), scheduler.QuotaStorage, "600")
	})
	e.upload(e.acme, "c", bytes.Repeat([]byte("c"), 400)) // to the byte
	if n := e.fsm.StoredBytes("acme"); n != 1000 {
		t.Fatalf("acme stores %d bytes, want 1000", n)
	}
	// At the limit every upload is refused, declared or not, and so is a
	// submission (by the FSM).
	e.unchanged(func() {
		wantQuota(t, upload(e.acme, bytes.NewReader([]byte("x"))), scheduler.QuotaStorage)
		wantQuota(t, upload(e.acme, chunked{strings.NewReader("x")}), scheduler.QuotaStorage)
	})
	wantQuota(t, e.doJSON("POST", "/jobs", e.acme, map[string]any{"type": "generate_dataset"}), scheduler.QuotaStorage)
	// Deleting a dataset makes room again.
	ds := e.fsm.Datasets("acme")
	wantStatus(t, e.do("DELETE", "/datasets/"+ds[0].ID, e.acme, nil), http.StatusOK)
	e.upload(e.acme, "d", []byte("d"))

	// Under the limit, a body of no declared length is stored, then
	// refused when it is registered; nothing refers to its object.
	e.setStorageQuota("globex", 1000)
	before := e.objects()
	wantQuota(t, upload(e.globex, chunked{bytes.NewReader(bytes.Repeat([]byte("g"), 1500))}), scheduler.QuotaStorage)
	if ds := e.fsm.Datasets("globex"); len(ds) != 0 {
		t.Fatalf("a refused upload registered %+v", ds)
	}
	var added []string
	for c := range e.objects() {
		if !before[c] {
			added = append(added, c)
		}
	}
	if len(added) != 1 {
		t.Fatalf("the refused upload stored %d objects, want 1", len(added))
	}
	if garbage := e.fsm.Garbage(testNow.Add(time.Hour)); !slices.Contains(garbage, added[0]) {
		t.Fatalf("the refused upload's object %s is not garbage (%v)", added[0], garbage)
	}
	if n := e.fsm.StoredBytes("globex"); n != 0 {
		t.Fatalf("globex stores %d bytes after a refused upload", n)
	}
}

// objects is the set of CIDs in the store.
func (e *env) objects() map[string]bool {
	e.t.Helper()
	set := map[string]bool{}
	if err := e.store.List(context.Background(), func(r cas.Ref) error { set[r.CID.String()] = true; return nil }); err != nil {
		e.t.Fatal(err)
	}
	return set
}

// A client that sends an upload's body whole before it reads the answer
// (as Python's requests does) gets its 429, not a reset, whether the body
// declares its length or is chunked; the connection closes after it.
func TestUploadQuotaBodySentWhole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	addr := e.serve()
	const size = 8 << 20
	e.setStorageQuota("acme", 1<<20)
	body := bytes.Repeat([]byte("x"), size)
	var chunks bytes.Buffer
	for off := 0; off < size; off += 64 << 10 {
		fmt.Fprintf(&chunks, "%x\r\n%s\r\n", 64<<10, body[off:off+64<<10])
	}
	chunks.WriteString("0\r\n\r\n")
	send := func(name, head string, body []byte) {
		t.Helper()
		conn := dial(t, addr)
		var wg sync.WaitGroup
		var werr error
		wg.Go(func() {
			_, werr = conn.Write(append([]byte(head+"\r\nHost: x\r\nAuthorization: Bearer "+e.acme+"\r\nContent-Type: application/octet-stream\r\n\r\n"), body...))
		})
		wg.Wait() // the whole body is sent before anything is read
		if werr != nil {
			t.Fatalf("%s: sending the body: %v", name, werr)
		}
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusTooManyRequests || !res.Close || !strings.Contains(string(b), `"quota_exceeded"`) {
			t.Fatalf("%s: %d close=%v %s", name, res.StatusCode, res.Close, b)
		}
	}
	e.unchanged(func() {
		send("declared past the quota", "POST /datasets?name=big HTTP/1.1\r\nContent-Length: "+fmt.Sprint(size), body)
	})
	// At the limit, a chunked body too.
	e.upload(e.acme, "full", bytes.Repeat([]byte("f"), 1<<20))
	e.unchanged(func() {
		send("chunked at the quota", "POST /datasets?name=big HTTP/1.1\r\nTransfer-Encoding: chunked", chunks.Bytes())
		send("declared at the quota", "POST /datasets?name=big HTTP/1.1\r\nContent-Length: "+fmt.Sprint(size), body)
	})
}
