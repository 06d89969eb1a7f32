package node_test

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
)

// TestSealedDatasetRanges: Range requests on a sealed dataset of several
// 64 KiB segments, starting in the middle of a segment, crossing segment
// boundaries and going back (the stored form seeks by segment), answer
// exactly the plaintext's bytes; more than four ranges get 416.
func TestSealedDatasetRanges(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Spec{Voter: true})
	n := c.WaitForLeader(30 * time.Second)
	c.WaitReady(n, 30*time.Second)
	const size = 200_000 // four segments, the last one partial
	d, data := upload(t, n, "ranges.bin", size)
	if d.StoredCID == "" || d.StoredCID == d.CID {
		t.Fatalf("dataset not sealed: %+v", d)
	}
	path := "/datasets/" + d.ID + "/download"

	for _, tc := range []struct {
		rng      string
		from, to int64 // inclusive
	}{
		{"bytes=100000-100099", 100000, 100099}, // inside the second segment
		{"bytes=65000-140000", 65000, 140000},   // across two boundaries
		{"bytes=150000-", 150000, size - 1},     // from the middle to the end
		{"bytes=-10", size - 10, size - 1},      // the last bytes
	} {
		resp, body := getRange(t, n, path, tc.rng)
		want := fmt.Sprintf("bytes %d-%d/%d", tc.from, tc.to, size)
		if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != want {
			t.Fatalf("%s: %d, Content-Range %q; want 206 and %q", tc.rng, resp.StatusCode, resp.Header.Get("Content-Range"), want)
		}
		if !bytes.Equal(body, data[tc.from:tc.to+1]) {
			t.Fatalf("%s: %d bytes that differ from the plaintext's", tc.rng, len(body))
		}
	}

	// Four ranges, out of order (each after the first seeks back or on).
	ranges := [][2]int64{{131072, 131171}, {10, 19}, {65530, 65545}, {199990, size - 1}}
	resp, body := getRange(t, n, path, "bytes=131072-131171,10-19,65530-65545,199990-")
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusPartialContent || err != nil || mt != "multipart/byteranges" {
		t.Fatalf("four ranges: %d %q %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for i, r := range ranges {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		got, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if cr, want := p.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", r[0], r[1], size); cr != want {
			t.Fatalf("part %d: Content-Range %q, want %q", i, cr, want)
		}
		if !bytes.Equal(got, data[r[0]:r[1]+1]) {
			t.Fatalf("part %d (%d-%d): bytes differ from the plaintext's", i, r[0], r[1])
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("a fifth part: %v", err)
	}

	resp, _ = getRange(t, n, path, "bytes=0-0,10-10,20-20,30-30,40-40")
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("five ranges: %d, want 416", resp.StatusCode)
	}
	if _, whole := getRange(t, n, path, ""); !bytes.Equal(whole, data) {
		t.Fatal("the whole download differs from the plaintext")
	}
}
