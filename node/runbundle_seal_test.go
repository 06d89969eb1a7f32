package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/bundle"
	"github.com/pwmesh/pwmesh/cas/mirror"
	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
)

// plainTar reports whether stored shows any sign of a RunBundle in clear:
// its manifest's name or a tar header.
func plainTar(stored []byte) bool {
	return bytes.Contains(stored, []byte(bundle.ManifestName)) || bytes.Contains(stored, []byte("ustar"))
}

// getRange GETs path from n with the admin key and an optional Range.
func getRange(t *testing.T, n *nodetest.Node, path, rng string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+nodetest.AdminToken)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestRunBundlesSealedOnEveryCopy: a job's RunBundle is sealed on every
// node that holds it and in the shared mirror; every node's download is
// the plain tar whose SHA-256 and size the job names, Range included, and
// `bundle verify` of it names the plain tar's CID.
func TestRunBundlesSealedOnEveryCopy(t *testing.T) {
	t.Parallel()
	mirrorURL := (&url.URL{Scheme: "file", Path: filepath.Join(t.TempDir(), "bucket")}).String()
	specs := nodetest.Voters(2)
	for i := range specs {
		specs[i].ObjectStore = mirrorURL
	}
	c := nodetest.Start(t, specs...)
	c.WaitForLeader(30 * time.Second)
	nodetest.WaitFor(t, 30*time.Second, "two ready nodes", func() bool {
		nodes, err := c.Nodes[0].Client.Nodes(context.Background())
		return err == nil && len(nodes) == 2
	})
	entry := c.Nodes[0]
	// Large enough for a few 64 KiB segments.
	j := submit(t, entry, "generate_dataset", "", `{"size":96}`, scheduler.Resources{})
	done := waitState(t, entry, j.ID, 2*time.Minute, terminal)
	if done.State != scheduler.StateSucceeded || done.RunBundle == nil {
		t.Fatalf("job %+v %+v", done, done.Error)
	}
	ref := *done.RunBundle
	stored, err := cas.ParseCID(ref.CID)
	if err != nil {
		t.Fatal(err)
	}
	plainCID, _ := cas.CIDFromSHA256(ref.SHA256)
	if plainCID.Equals(stored) {
		t.Fatalf("runbundle %+v names the plain tar as the stored object", ref)
	}

	// Every holder's disk, and the mirror, hold the sealed form.
	b, _ := entry.Blob(ref.CID)
	if len(b.Holders) < 2 {
		t.Fatalf("bundle held by %v", b.Holders)
	}
	var sealed []byte
	for _, h := range b.Holders {
		rc, err := nodeByID(c, h).LocalStore().Open(context.Background(), stored)
		if err != nil {
			t.Fatalf("holder %s: %v", h, err)
		}
		onDisk, _ := io.ReadAll(rc)
		rc.Close()
		if plainTar(onDisk) || int64(len(onDisk)) == ref.Size {
			t.Fatalf("node %s keeps the RunBundle in clear", h)
		}
		sealed = onDisk
	}
	nodetest.WaitFor(t, 30*time.Second, "the mirror copy", func() bool {
		bl, _ := entry.Blob(ref.CID)
		return bl.Mirrored
	})
	m, err := mirror.Open(context.Background(), mirrorURL, mirror.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rc, err := m.Open(context.Background(), stored)
	if err != nil {
		t.Fatal(err)
	}
	mirrored, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(mirrored, sealed) || plainTar(mirrored) {
		t.Fatal("the mirror does not hold the sealed RunBundle")
	}

	// Every node serves the plain tar, whole and in ranges.
	t.Logf("bundle: %d bytes, stored as %d", ref.Size, len(sealed))
	for _, n := range c.Nodes {
		nodetest.WaitFor(t, 30*time.Second, n.String()+"'s replica to show the job succeeded", func() bool {
			jj, ok := n.Job(j.ID)
			return ok && jj.State == scheduler.StateSucceeded
		})
		resp, tar := getRange(t, n, "/jobs/"+j.ID+"/runbundle", "")
		if resp.StatusCode != http.StatusOK || sha(tar) != ref.SHA256 || int64(len(tar)) != ref.Size ||
			resp.Header.Get("ETag") != `"`+ref.CID+`"` || !plainTar(tar) {
			t.Fatalf("download from %s: %d, %d bytes, sha256 %s, ETag %s; job %+v", n, resp.StatusCode, len(tar), sha(tar), resp.Header.Get("ETag"), ref)
		}
		rep, err := bundle.Verify(bytes.NewReader(tar))
		if err != nil || !rep.Ref.CID.Equals(plainCID) || rep.Manifest.Execution.JobID != j.ID {
			t.Fatalf("verify the download from %s: %+v %v", n, rep.Ref, err)
		}
		// A range across the first 64 KiB segment's end where the tar is
		// that long, else in its middle.
		from := len(tar) / 2
		if len(tar) > 64<<10+100 {
			from = 64<<10 - 50
		}
		resp, part := getRange(t, n, "/jobs/"+j.ID+"/runbundle", fmt.Sprintf("bytes=%d-%d", from, from+99))
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, tar[from:from+100]) {
			t.Fatalf("range from %s: %d, %d bytes", n, resp.StatusCode, len(part))
		}
		resp, tail := getRange(t, n, "/jobs/"+j.ID+"/runbundle", "bytes=-10")
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(tail, tar[len(tar)-10:]) {
			t.Fatalf("suffix range from %s: %d, %d bytes", n, resp.StatusCode, len(tail))
		}
	}
}

// TestRunBundleSurvivesKeyRotation: a RunBundle sealed before a data-key
// and a master-key rotation downloads intact from a node left with only
// the new master key.
func TestRunBundleSurvivesKeyRotation(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Spec{Voter: true})
	n := c.WaitForLeader(30 * time.Second)
	c.WaitReady(n, 30*time.Second)
	ctx := context.Background()
	j := submit(t, n, "generate_dataset", "", `{"size":16}`, scheduler.Resources{})
	done := waitState(t, n, j.ID, 2*time.Minute, terminal)
	if done.State != scheduler.StateSucceeded || done.RunBundle == nil {
		t.Fatalf("job %+v %+v", done, done.Error)
	}
	if _, err := n.Client.RotateTenantKey(ctx, done.Tenant); err != nil {
		t.Fatal(err)
	}
	fresh := nodetest.NewMasterKey("m2")
	c.SetMasterKeys(fresh + c.MasterKeys())
	c.Stop(n)
	c.Restart(n)
	if _, err := n.Client.RewrapKeys(ctx); err != nil {
		t.Fatal(err)
	}
	c.SetMasterKeys(fresh)
	c.Stop(n)
	c.Restart(n)
	var got []byte
	nodetest.WaitFor(t, 30*time.Second, "the bundle after the rotations", func() bool {
		got = download(n, "/jobs/"+j.ID+"/runbundle")
		return got != nil
	})
	if sha(got) != done.RunBundle.SHA256 {
		t.Fatalf("bundle after the rotations: sha256 %s, want %s", sha(got), done.RunBundle.SHA256)
	}
}
