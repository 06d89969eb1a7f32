package web_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

// TestExpiredBundleIsGone: retention's removal answers 410 with a reason,
// not a puzzling 404.
func TestExpiredBundleIsGone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	e.finishJob(j.ID, testNow, testNow, nil, []byte("an old bundle"))
	e.apply(&scheduler.ExpireBundles{At: testNow.Add(31 * 24 * time.Hour), Jobs: []string{j.ID}})
	r := e.do("GET", "/jobs/"+j.ID+"/runbundle", e.acme, nil)
	wantError(t, r, http.StatusGone, "expired")
	if !strings.Contains(string(r.body), "30 days") {
		t.Fatalf("message does not say why: %s", r.body)
	}
}

// fullDisk fails every store as a full disk does.
type fullDisk struct{}

func (fullDisk) PutDataset(_ context.Context, _ string, r io.Reader) (scheduler.Dataset, error) {
	_, _ = io.Copy(io.Discard, r)
	return scheduler.Dataset{}, fmt.Errorf("storage: store dataset: fsstore: put: write tmp/x: %w", syscall.ENOSPC)
}

func (fullDisk) OpenDataset(context.Context, scheduler.Dataset) (io.ReadSeekCloser, error) {
	return nil, errors.New("unused")
}

// TestFullDiskUpload: a full disk answers 507 with what to do, and nothing
// is registered.
func TestFullDiskUpload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *web.Config, d *web.Deps) { d.Datasets = fullDisk{} })
	e.unchanged(func() {
		r := e.do("POST", "/datasets?name=big.bin", e.acme, strings.NewReader("some bytes"), "Content-Type", "application/octet-stream")
		wantError(t, r, http.StatusInsufficientStorage, "insufficient_storage")
	})
	if ds := e.fsm.Datasets(""); len(ds) != 0 {
		t.Fatalf("registered %+v", ds)
	}
}

// failingBody yields some bytes and then fails, as a client that drops
// its connection mid-upload does.
type failingBody struct{ n int }

func (b *failingBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errors.New("client went away")
	}
	k := min(len(p), b.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	b.n -= k
	return k, nil
}

// TestInterruptedUploadLeavesNothing: an upload cut off mid-body registers
// no dataset and leaves no object in the store.
func TestInterruptedUploadLeavesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.unchanged(func() {
		req, err := http.NewRequest("POST", e.url+"/datasets?name=cut.bin", &failingBody{n: 300_000})
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = 1 << 20 // promised more than is sent
		req.Header.Set("Authorization", "Bearer "+e.acme)
		req.Header.Set("Content-Type", "application/octet-stream")
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
			if res.StatusCode < 400 {
				t.Fatalf("cut-off upload answered %d", res.StatusCode)
			}
		}
		// The handler may still be unwinding: wait until it has.
		waitFor(t, 10*time.Second, "the handler to give up", func() bool { return e.sig().objects == 0 })
	})
	if ds := e.fsm.Datasets(""); len(ds) != 0 {
		t.Fatalf("registered %+v", ds)
	}
}
