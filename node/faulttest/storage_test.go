package faulttest

import (
	"archive/tar"
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	lossUploads    = 3
	lossUploadSize = 300 << 10 // bytes of each uploaded dataset (plus a few, so that no two are alike in size)
	lossJobs       = 4         // generate_dataset jobs; each leaves a RunBundle and a dataset
	lossCopies     = 2         // the replication factor (the agent's default --replicas)
	// lossWait bounds the wait for the repair after the loss, and then the
	// retries of the downloads from the survivors.
	lossWait = 60 * time.Second
)

// content is one object the test checks after the loss: an uploaded
// dataset, a job's RunBundle or a job's output dataset.
type content struct {
	what      string // for messages: "RunBundle of job j_…"
	download  string // the route that returns its bytes
	record    string // the route of its record: /jobs/{id} or /datasets/{id}
	token     string
	sha256    string // of the bytes a download must return
	size      int64
	storedCID string // what the nodes' disks hold (a dataset's sealed form)
	summary   string // the record before the loss, as recordSummary says it
}

// apiDataset is the part of a dataset record the test reads.
type apiDataset struct {
	ID        string `json:"id"`
	CID       string `json:"cid"`
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	StoredCID string `json:"stored_cid"`
	Job       string `json:"job"`
}

func (d apiDataset) stored() string {
	if d.StoredCID != "" {
		return d.StoredCID
	}
	return d.CID
}

// TestLoseANodeForGood stores datasets and RunBundles, removes the non-leader
// node that holds most of their copies for good (docker rm -f), and checks
// that the leader restores two copies of everything on the survivors, that
// every survivor serves every object with its recorded SHA-256, and that no
// record was lost; doc.go lists the rules.
func TestLoseANodeForGood(t *testing.T) {
	skipWithoutDocker(t, "storage fault test: builds an image, runs five Docker containers for about a minute and removes one")
	// Not t.Parallel: two five-node clusters at once on a 2-core machine
	// starve each other's heartbeats, and TestMultiHostFaults' overlap rule
	// (R6) is timed. Sequential tests finish before parallel ones start.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	began := time.Now()

	c := newCluster(t, ctx)
	t.Logf("static binary and image %s built in %s", c.image, time.Since(began).Round(time.Second))
	c.start(ctx)
	if err := c.waitHealthy(ctx, 2*time.Minute, 5, c.nodes...); err != nil {
		t.Fatalf("the mesh did not come up (the test reaches the containers at their addresses on the Docker bridge network, which needs a Linux host): %v", err)
	}
	for _, n := range c.nodes {
		t.Logf("%s at %s is node %s (voter %v)", n.name, n.ip, n.nodeID, n.voter)
	}
	key := createKey(t, ctx, c)
	transfer := &http.Client{Timeout: 30 * time.Second}

	// 1, 2: the objects and their sums. Nothing reads content until the
	// repair was seen on disk: a node that serves an object it lacks keeps
	// the copy it fetched, which would hide a missing repair.
	items := uploadDatasets(t, ctx, c, transfer)
	jobItems, ranJobs := runJobs(t, ctx, c, key)
	items = append(items, jobItems...)
	t.Logf("%s: %d objects stored (%d uploads, %d jobs' RunBundles and datasets); jobs ran on %v", stamp(), len(items), lossUploads, lossJobs, ranJobs)

	// L1: every object is on lossCopies nodes' disks before the loss.
	before, err := c.holders(ctx, c.nodes)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if h := before[it.storedCID]; len(h) < lossCopies {
			t.Errorf("L1 under-replicated before any fault: %s (%s) is on %v", it.what, it.storedCID, h)
		}
	}

	// 3: remove the non-leader that holds most copies.
	leader, err := c.leader(ctx)
	if err != nil {
		t.Fatalf("find the leader: %v", err)
	}
	victim := pickVictim(c.nodes, leader, items, before, ranJobs)
	if victim == nil {
		t.Fatalf("no node but the leader %s holds a copy: %v", leader.name, before)
	}
	victimLog := c.removeForGood(ctx, victim)
	lost := time.Now()
	survivors := c.liveNodes()
	held := 0
	for _, it := range items {
		if slices.Contains(before[it.storedCID], victim.name) {
			held++
		}
	}
	t.Logf("%s: removed %s (node %s, voter %v, ran %d jobs) for good; it held %d of %d objects; leader %s",
		stamp(), victim.name, victim.nodeID, victim.voter, ranJobs[victim.nodeID], held, len(items), leader.name)

	// L2: the repair, seen on the survivors' disks.
	var after map[string][]string
	err = waitFor(ctx, lossWait, func() error {
		h, err := c.holders(ctx, survivors)
		if err != nil {
			return err
		}
		after = h
		var short []string
		for _, it := range items {
			if len(h[it.storedCID]) < lossCopies {
				short = append(short, fmt.Sprintf("%s on %v", it.what, h[it.storedCID]))
			}
		}
		if len(short) > 0 {
			return fmt.Errorf("%d object(s) on fewer than %d survivors: %s", len(short), lossCopies, strings.Join(short, "; "))
		}
		return nil
	})
	if err != nil {
		t.Errorf("L2 not repaired: %v", err)
	} else {
		t.Logf("%s: every object is on %d survivors again, %s after the loss", stamp(), lossCopies, time.Since(lost).Round(100*time.Millisecond))
	}
	for _, it := range items {
		var gained []string
		for _, name := range after[it.storedCID] {
			if !slices.Contains(before[it.storedCID], name) {
				gained = append(gained, name)
			}
		}
		t.Logf("%s: on %v before, on %v after; new copies on %v", it.what, shortNames(before[it.storedCID]), shortNames(after[it.storedCID]), shortNames(gained))
	}

	// L3: every survivor serves every object with its recorded sum.
	type read struct {
		n  *node
		it content
	}
	var pending []read
	for _, n := range survivors {
		for _, it := range items {
			pending = append(pending, read{n, it})
		}
	}
	err = waitFor(ctx, lossWait, func() error {
		var left []read
		var last error
		for _, r := range pending {
			st, b, err := c.doWith(ctx, transfer, r.n, "GET", r.it.download, r.it.token, nil, nil)
			switch {
			case err != nil:
				last = fmt.Errorf("%s from %s: %w", r.it.what, r.n.name, err)
			case st != http.StatusOK:
				last = fmt.Errorf("%s from %s: %d %s", r.it.what, r.n.name, st, bytes.TrimSpace(b))
			default:
				if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != r.it.sha256 || int64(len(b)) != r.it.size {
					t.Errorf("L3 wrong bytes: %s from %s: sha256 %x size %d, recorded %s size %d", r.it.what, r.n.name, sum, len(b), r.it.sha256, r.it.size)
				}
				continue // wrong bytes are not retried
			}
			left = append(left, r)
		}
		pending = left
		if len(left) > 0 {
			return fmt.Errorf("%d download(s) still failing; last: %w", len(left), last)
		}
		return nil
	})
	if err != nil {
		t.Errorf("L3 unreadable after the loss: %v", err)
	} else {
		t.Logf("%s: %d survivors served all %d objects with their recorded sha256", stamp(), len(survivors), len(items))
	}

	// L4: every survivor still has every record, unchanged.
	for _, n := range survivors {
		for _, it := range items {
			got, err := c.recordSummary(ctx, n, it)
			switch {
			case err != nil:
				t.Errorf("L4 record lost: %s on %s: %v", it.what, n.name, err)
			case got != it.summary:
				t.Errorf("L4 record changed: %s on %s: %s, before the loss %s", it.what, n.name, got, it.summary)
			}
		}
	}
	if err := c.waitHealthy(ctx, 30*time.Second, 0, survivors...); err != nil {
		t.Errorf("the survivors do not agree on a leader: %v", err)
	}

	// For the reader of -v output: who repaired, and what the reads added.
	if now, err := c.holders(ctx, survivors); err == nil {
		copies := map[int]int{}
		for _, it := range items {
			copies[len(now[it.storedCID])]++
		}
		t.Logf("after the reads: objects by number of copies %v (a node that serves an object it lacks keeps the copy)", copies)
	}
	keep := func(name string, b []byte) {
		if dir := os.Getenv("PWMESH_FAULTTEST_LOGS"); dir != "" {
			if err := os.WriteFile(filepath.Join(dir, name+".log"), b, 0o644); err != nil {
				t.Errorf("keep logs: %v", err)
			}
		}
	}
	keep(victim.name, victimLog)
	for _, n := range survivors {
		b, err := c.logs(ctx, n)
		if err != nil {
			t.Error(err)
			continue
		}
		keep(n.name, b)
		var counts []string
		for _, msg := range []string{"storage: repairing an under-replicated object", "storage: replicated", "storage: fetched a copy"} {
			pre, post := countMsg(b, msg, lost)
			counts = append(counts, fmt.Sprintf("%q %d+%d", msg, pre, post))
		}
		t.Logf("%s logged (before+after the loss) %s", n.name, strings.Join(counts, ", "))
	}
	t.Logf("whole test took %s", time.Since(began).Round(time.Second))
}

// uploadDatasets uploads lossUploads datasets of random bytes with the
// admin token, through different nodes.
func uploadDatasets(t *testing.T, ctx context.Context, c *cluster, client *http.Client) []content {
	t.Helper()
	var out []content
	for i := range lossUploads {
		data := make([]byte, lossUploadSize+i*1000)
		if _, err := crand.Read(data); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		want := hex.EncodeToString(sum[:])
		n := c.nodes[(2*i)%len(c.nodes)]
		name := fmt.Sprintf("faulttest-%s-%d", c.run, i)
		var d apiDataset
		// Retried on any failure: a retry after an answer lost in transit
		// makes a second record of the same bytes, which shares the stored
		// copy and is not checked.
		err := waitFor(ctx, time.Minute, func() error {
			st, b, err := c.doWith(ctx, client, n, "POST", "/datasets?name="+name, adminToken, data,
				http.Header{"Content-Type": {"application/octet-stream"}})
			if err != nil {
				return err
			}
			if st != http.StatusCreated {
				return fmt.Errorf("POST /datasets on %s: %d %s", n.name, st, bytes.TrimSpace(b))
			}
			return json.Unmarshal(b, &d)
		})
		if err != nil {
			t.Fatalf("upload %s: %v", name, err)
		}
		if d.SHA256 != want || d.Size != int64(len(data)) {
			t.Errorf("upload %s through %s: the record says sha256 %s size %d; uploaded %s size %d", name, n.name, d.SHA256, d.Size, want, len(data))
		}
		out = append(out, content{
			what:     fmt.Sprintf("uploaded dataset %s", d.ID),
			download: "/datasets/" + d.ID + "/download", record: "/datasets/" + d.ID, token: adminToken,
			sha256: want, size: int64(len(data)), storedCID: d.stored(), summary: datasetSummary(d),
		})
	}
	return out
}

// runJobs runs lossJobs generate_dataset jobs to success and returns their
// RunBundles and output datasets, and how many jobs each node ran.
func runJobs(t *testing.T, ctx context.Context, c *cluster, key string) ([]content, map[string]int) {
	t.Helper()
	h := &history{}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for i := range lossJobs {
		submit(t, ctx, c, h, r, key, i, map[string]any{"type": "generate_dataset", "params": map[string]any{"size": 32, "seed": i}})
	}
	ops, _ := h.snapshot()
	var ids []string
	for _, op := range ops {
		if op.OK {
			ids = append(ids, op.JobID)
		}
	}
	if len(ids) != lossJobs {
		t.Fatalf("%d of %d jobs acknowledged", len(ids), lossJobs)
	}
	var final map[string]apiJob
	var failed []string
	err := waitFor(ctx, 2*time.Minute, func() error {
		f, err := listJobs(ctx, c, c.nodes[0], key)
		if err != nil {
			return err
		}
		final, failed = f, nil
		for _, id := range ids {
			j, ok := f[id]
			switch {
			case !ok:
				return fmt.Errorf("job %s not listed", id)
			case !terminal(j.State):
				return fmt.Errorf("job %s is %s", id, j.State)
			case j.State != "succeeded" || j.RunBundle == nil || j.Outputs["dataset"] == "":
				failed = append(failed, fmt.Sprintf("job %s %s %+v", id, j.State, j.Error))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("jobs did not finish: %v", err)
	}
	if len(failed) > 0 {
		t.Fatalf("generate_dataset jobs did not succeed: %s", strings.Join(failed, "; "))
	}
	var out []content
	ran := map[string]int{}
	for _, id := range ids {
		j := final[id]
		ran[j.Node]++
		out = append(out, content{
			what:     "RunBundle of job " + id,
			download: "/jobs/" + id + "/runbundle", record: "/jobs/" + id, token: key,
			sha256: j.RunBundle.SHA256, size: j.RunBundle.Size, storedCID: j.RunBundle.CID, summary: jobSummary(j),
		})
		var d apiDataset
		if err := c.getJSON(ctx, c.nodes[0], "/datasets/"+j.Outputs["dataset"], key, &d); err != nil {
			t.Fatalf("the dataset of job %s: %v", id, err)
		}
		out = append(out, content{
			what:     fmt.Sprintf("dataset %s of job %s", d.ID, id),
			download: "/datasets/" + d.ID + "/download", record: "/datasets/" + d.ID, token: key,
			sha256: d.SHA256, size: d.Size, storedCID: d.stored(), summary: datasetSummary(d),
		})
	}
	return out, ran
}

func jobSummary(j apiJob) string {
	return fmt.Sprintf("job %s %s on %s, RunBundle %s sha256 %s size %d, outputs %v",
		j.ID, j.State, j.Node, j.RunBundle.CID, j.RunBundle.SHA256, j.RunBundle.Size, j.Outputs)
}

func datasetSummary(d apiDataset) string {
	return fmt.Sprintf("dataset %s cid %s sha256 %s size %d stored as %s, job %q", d.ID, d.CID, d.SHA256, d.Size, d.stored(), d.Job)
}

// recordSummary reads its record from n (a GET of metadata only, which
// moves no content) and says it as the summary recorded before the loss.
func (c *cluster) recordSummary(ctx context.Context, n *node, it content) (string, error) {
	if strings.HasPrefix(it.record, "/jobs/") {
		var j apiJob
		if err := c.getJSON(ctx, n, it.record, it.token, &j); err != nil {
			return "", err
		}
		if j.RunBundle == nil {
			return fmt.Sprintf("job %s %s without a RunBundle", j.ID, j.State), nil
		}
		return jobSummary(j), nil
	}
	var d apiDataset
	if err := c.getJSON(ctx, n, it.record, it.token, &d); err != nil {
		return "", err
	}
	return datasetSummary(d), nil
}

// pickVictim picks the node other than the leader whose disk holds most of
// the objects, then the one that ran most jobs, then the first.
func pickVictim(nodes []*node, leader *node, items []content, holders map[string][]string, ranJobs map[string]int) *node {
	var best *node
	bestHeld := 0
	for _, n := range nodes {
		if n == leader {
			continue
		}
		held := 0
		for _, it := range items {
			if slices.Contains(holders[it.storedCID], n.name) {
				held++
			}
		}
		if held > bestHeld || (held == bestHeld && best != nil && ranJobs[n.nodeID] > ranJobs[best.nodeID]) {
			best, bestHeld = n, held
		}
	}
	return best
}

// removeForGood removes a container and its disk (docker rm -f -v) and
// returns its log, read just before; the log's tail is printed if the test
// fails, as the cluster's cleanup does for the others.
func (c *cluster) removeForGood(ctx context.Context, n *node) []byte {
	b, err := c.logs(ctx, n)
	if err != nil {
		c.t.Logf("logs of %s before its removal: %v", n.name, err)
	}
	c.t.Cleanup(func() {
		if c.t.Failed() {
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			c.t.Logf("---- last log lines of %s (%s, node %s), removed during the test ----\n%s",
				n.name, n.ip, n.nodeID, strings.Join(lines[max(0, len(lines)-80):], "\n"))
		}
	})
	c.setLive(n.name, false)
	if _, err := dockerCmd(ctx, "rm", "-f", "-v", n.name); err != nil {
		c.t.Fatalf("fault: %v", err)
	}
	c.markDown(n.name, time.Now())
	return b
}

// holders maps each CID found on the given nodes' disks to the names of
// the nodes that hold it.
func (c *cluster) holders(ctx context.Context, nodes []*node) (map[string][]string, error) {
	out := map[string][]string{}
	for _, n := range nodes {
		cids, err := diskCopies(ctx, n)
		if err != nil {
			return nil, err
		}
		for _, id := range cids {
			out[id] = append(out[id], n.name)
		}
	}
	return out, nil
}

// diskCopies lists the CIDs in a node's content store, read from its
// container's file system with `docker cp` (the replicated blob index has
// no public API, and a read through the API would add a copy). It relies
// on cas/fsstore's layout: <data-dir>/cas/blocks/<last two characters of
// the CID>/<CID>.
func diskCopies(ctx context.Context, n *node) ([]string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", "cp", n.name+":/data/cas/blocks", "-")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("docker cp %s:/data/cas/blocks: %w: %s", n.name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	var out []string
	tr := tar.NewReader(&stdout)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("the content store of %s: %w", n.name, err)
		}
		dir, name := path.Split(h.Name)
		if h.Typeflag == tar.TypeReg && len(name) > 2 && strings.HasSuffix(name, path.Base(dir)) {
			out = append(out, name)
		}
	}
}

// shortNames drops the test run's prefix from container names.
func shortNames(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n[strings.LastIndexByte(n, '-')+1:]
	}
	slices.Sort(out)
	return out
}

// countMsg counts a log's JSON lines with this exact msg stamped before
// and at or after t.
func countMsg(logs []byte, msg string, t time.Time) (before, after int) {
	for line := range bytes.Lines(logs) {
		var l logLine
		if !bytes.Contains(line, []byte(`"msg":"`+msg+`"`)) || json.Unmarshal(line, &l) != nil || l.Msg != msg {
			continue
		}
		if l.Time.Before(t) {
			before++
		} else {
			after++
		}
	}
	return before, after
}
