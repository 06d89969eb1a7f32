package faulttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/bundle"
)

const (
	jobCount    = 30
	jobInterval = 1500 * time.Millisecond
	// Every heavyEvery-th job is a calibrate_and_reconstruct of a 64×64
	// dataset with 2000 iterations (about 4 s of CPU) instead of a 16×16
	// generate_dataset (about 50 ms), so that faults find runners mid-job.
	heavyEvery = 3
	setupSeed  = 1000 // the generate_dataset that makes the heavy jobs' dataset
)

// history is the test's record of what it did and saw.
type history struct {
	mu  sync.Mutex
	ops []submitOp
	obs []observation
}

func (h *history) addOp(op submitOp) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

func (h *history) addObs(o ...observation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.obs = append(h.obs, o...)
}

func (h *history) snapshot() ([]submitOp, []observation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops), slices.Clone(h.obs)
}

// TestMultiHostFaults runs five agents in Docker containers and faults them
// while jobs stream in; doc.go lists what the checker asserts.
func TestMultiHostFaults(t *testing.T) {
	skipWithoutDocker(t, "multi-host fault test: builds an image and runs five Docker containers for about a minute")
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	began := time.Now()

	c := newCluster(t, ctx)
	t.Logf("static binary and image %s built in %s; network %s on %s.0/24", c.image, time.Since(began).Round(time.Second), c.net, c.subnet)
	c.start(ctx)
	if err := c.waitHealthy(ctx, 2*time.Minute, 5, c.nodes...); err != nil {
		t.Fatalf("the mesh did not come up (the test reaches the containers at their addresses on the Docker bridge network, which needs a Linux host): %v", err)
	}
	for _, n := range c.nodes {
		t.Logf("%s at %s is node %s (voter %v)", n.name, n.ip, n.nodeID, n.voter)
	}
	key := createKey(t, ctx, c)

	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d (node choices)", seed)
	h := &history{}

	// The heavy jobs' dataset, made by a job of the history like any other.
	submit(t, ctx, c, h, rand.New(rand.NewPCG(seed, 1<<34)), key, setupSeed,
		map[string]any{"type": "generate_dataset", "params": map[string]any{"size": 64, "seed": setupSeed}})
	dataset := waitDataset(t, ctx, c, h, key)

	// The poller records job states seen on random live nodes.
	pollStop := make(chan struct{})
	var pollWG sync.WaitGroup
	pollWG.Add(1)
	go func() {
		defer pollWG.Done()
		r := rand.New(rand.NewPCG(seed, 1<<32))
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-pollStop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			n := c.randomLive(r)
			var list struct{ Jobs []apiJob }
			if err := c.getJSON(ctx, n, "/jobs?limit=1000", key, &list); err != nil {
				continue
			}
			now := time.Now()
			obs := make([]observation, 0, len(list.Jobs))
			for _, j := range list.Jobs {
				obs = append(obs, observation{At: now, Container: n.name, JobID: j.ID, State: j.State, CID: j.cid()})
			}
			h.addObs(obs...)
		}
	}()

	// Submissions: one job every jobInterval, each retried (same
	// Idempotency-Key) on random live nodes until acknowledged.
	t0 := time.Now()
	var subWG sync.WaitGroup
	for i := range jobCount {
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			if !sleepUntil(ctx, t0.Add(time.Duration(i)*jobInterval)) {
				return
			}
			req := map[string]any{"type": "generate_dataset", "params": map[string]any{"size": 16, "seed": i}}
			if i%heavyEvery == heavyEvery-1 {
				req = map[string]any{"type": "calibrate_and_reconstruct", "dataset": dataset,
					"params": map[string]any{"seed": i, "iterations": 2000}}
			}
			submit(t, ctx, c, h, rand.New(rand.NewPCG(seed, uint64(i))), key, i, req)
		}()
	}

	// On an early return, stop and wait for the goroutines before the
	// containers go.
	defer func() {
		cancel()
		subWG.Wait()
		pollWG.Wait()
	}()

	// The faults, on a fixed schedule from the first submission.
	r := rand.New(rand.NewPCG(seed, 1<<33))
	workers := []*node{c.nodes[3], c.nodes[4]}
	if r.IntN(2) == 1 {
		workers[0], workers[1] = workers[1], workers[0]
	}
	// Each step waits at least its delay after the previous one; the
	// disconnect and the graceful restart wait (a bounded while) for their
	// worker to be running a job, so that they cut off or stop a runner.
	faulted := map[string]bool{}
	after := func(d time.Duration) {
		if !sleepUntil(ctx, time.Now().Add(d)) {
			t.Fatalf("test context ended: %v", ctx.Err())
		}
	}
	after(4 * time.Second)
	l1, err := c.leader(ctx)
	if err != nil {
		t.Fatalf("find the leader: %v", err)
	}
	c.kill(ctx, l1)
	faulted[l1.name] = true

	after(4 * time.Second)
	w1 := c.busy(ctx, key, 8*time.Second, workers...)
	c.disconnect(ctx, w1)
	faulted[w1.name] = true
	w2 := workers[0]
	if w2 == w1 {
		w2 = workers[1]
	}
	after(10 * time.Second)
	c.reconnect(ctx, w1)

	after(2 * time.Second)
	c.startAgain(ctx, l1)
	if err := c.waitHealthy(ctx, time.Minute, 0, l1); err != nil {
		t.Errorf("%s after its restart: %v", l1.name, err)
	}

	after(2 * time.Second)
	c.busy(ctx, key, 8*time.Second, w2)
	c.restart(ctx, w2)
	faulted[w2.name] = true
	if err := c.waitHealthy(ctx, time.Minute, 0, w2); err != nil {
		t.Errorf("%s after its restart: %v", w2.name, err)
	}

	after(3 * time.Second)
	l2, err := c.leader(ctx)
	if err != nil {
		t.Fatalf("find the leader: %v", err)
	}
	c.kill(ctx, l2)
	faulted[l2.name] = true
	after(6 * time.Second)
	c.startAgain(ctx, l2)

	subWG.Wait()
	t.Logf("%s: all %d submissions returned (%s after the first)", stamp(), jobCount, time.Since(t0).Round(time.Second))

	// R10: the mesh heals.
	if err := c.waitHealthy(ctx, 90*time.Second, 5, c.nodes...); err != nil {
		t.Errorf("R10 the mesh did not heal: %v", err)
	}

	// The final state comes from a voter that was never faulted.
	var reader *node
	for _, n := range c.nodes {
		if n.voter && !faulted[n.name] {
			reader = n
			break
		}
	}
	if reader == nil {
		t.Fatal("no voter was spared (the schedule kills at most two)")
	}
	ops, _ := h.snapshot()
	acked := map[string]bool{}
	for _, op := range ops {
		if op.OK {
			acked[op.JobID] = true
		}
	}
	var final map[string]apiJob
	err = waitFor(ctx, 2*time.Minute, func() error {
		f, err := listJobs(ctx, c, reader, key)
		if err != nil {
			return err
		}
		final = f
		for id := range acked {
			if j, ok := f[id]; ok && !terminal(j.State) {
				return fmt.Errorf("job %s is %s (attempts %d, reason %q)", id, j.State, j.Attempts, j.Reason)
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("acknowledged jobs not terminal on %s: %v", reader.name, err)
	}
	close(pollStop)
	pollWG.Wait()
	if final == nil {
		t.Fatalf("could not read the final state from %s", reader.name)
	}

	// R9: results verify; their manifests feed R7.
	execs := map[string]bundle.Execution{}
	for _, id := range slices.Sorted(maps.Keys(final)) {
		j := final[id]
		if j.State != "succeeded" || j.RunBundle == nil {
			continue
		}
		x, err := verifyBundle(ctx, c, reader, key, j)
		if err != nil {
			t.Errorf("R9 %v", err)
			continue
		}
		execs[id] = x
	}

	// Runs from the logs.
	var runs []run
	var finishes []finishLine
	for _, n := range c.nodes {
		b, err := c.logs(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if dir := os.Getenv("PWMESH_FAULTTEST_LOGS"); dir != "" {
			if err := os.WriteFile(filepath.Join(dir, n.name+".log"), b, 0o644); err != nil {
				t.Errorf("keep logs: %v", err)
			}
		}
		rs, fs, err := parseRuns(n.name, b, c.downTimes(n.name))
		if err != nil {
			t.Fatal(err)
		}
		runs, finishes = append(runs, rs...), append(finishes, fs...)
	}

	ops, obs := h.snapshot()
	violations, notes := check(checkInput{LeaseTTL: leaseTTL, Ops: ops, Obs: obs, Final: final, Runs: runs, Finishes: finishes, Execs: execs,
		MustSucceed: map[string]bool{"generate_dataset": true}})
	for _, v := range violations {
		t.Error(v)
	}
	for _, n := range append(notes, staleStarts(runs)...) {
		t.Logf("note: %s", n)
	}
	logSummary(t, ops, obs, final, runs)
	t.Logf("whole test took %s", time.Since(began).Round(time.Second))
}

// createKey makes the test's tenant key and waits until every node knows it.
func createKey(t *testing.T, ctx context.Context, c *cluster) string {
	t.Helper()
	var key string
	body, _ := json.Marshal(map[string]string{"tenant": "faulttest", "tier": "paid"})
	err := waitFor(ctx, time.Minute, func() error {
		st, b, err := c.do(ctx, c.nodes[0], "POST", "/keys", adminToken, body, nil)
		if err != nil {
			return err
		}
		if st != http.StatusCreated {
			return fmt.Errorf("POST /keys: %d %s", st, b)
		}
		var k struct{ Key string }
		if err := json.Unmarshal(b, &k); err != nil || k.Key == "" {
			return fmt.Errorf("POST /keys: %s: %v", b, err)
		}
		key = k.Key
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Keys replicate through Raft; a node that has not applied it yet says 401.
	err = waitFor(ctx, time.Minute, func() error {
		for _, n := range c.nodes {
			var list struct{ Jobs []apiJob }
			if err := c.getJSON(ctx, n, "/jobs?limit=1", key, &list); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the new key does not work everywhere: %v", err)
	}
	return key
}

// submit sends job number seed (its params carry the same seed) until a node acknowledges it, recording
// every attempt. Transport errors, 401 (key not replicated yet), 409, 429
// and 5xx are retried with the same Idempotency-Key.
func submit(t *testing.T, ctx context.Context, c *cluster, h *history, r *rand.Rand, key string, seed int, req map[string]any) {
	idem := fmt.Sprintf("faulttest-%s-%d", c.run, seed)
	body, _ := json.Marshal(req)
	hdr := http.Header{"Idempotency-Key": {idem}}
	giveUp := time.Now().Add(90 * time.Second)
	for {
		n := c.randomLive(r)
		op := submitOp{Seed: seed, Key: idem, Container: n.name, Invoke: time.Now()}
		st, b, err := c.do(ctx, n, "POST", "/jobs", key, body, hdr)
		op.Return, op.Status = time.Now(), st
		switch {
		case err != nil:
			op.Err = err.Error()
		case st == http.StatusAccepted:
			var j apiJob
			if err := json.Unmarshal(b, &j); err != nil || j.ID == "" {
				op.Err = fmt.Sprintf("202 with a body without a job: %s", b)
				break
			}
			op.OK, op.JobID = true, j.ID
		default:
			op.Err = string(b)
		}
		h.addOp(op)
		if op.OK {
			return
		}
		retry := err != nil || st == http.StatusUnauthorized || st == http.StatusConflict || st == http.StatusTooManyRequests || st >= 500
		if !retry {
			t.Errorf("job %d: POST /jobs on %s: %d %s (not retryable)", seed, n.name, st, b)
			return
		}
		if time.Now().After(giveUp) {
			t.Errorf("job %d: no node acknowledged it within 90 s; last try on %s: %d %s %v", seed, n.name, st, b, err)
			return
		}
		if !sleepUntil(ctx, time.Now().Add(300*time.Millisecond)) {
			return
		}
	}
}

// waitDataset waits for the setup job to succeed and returns its dataset.
func waitDataset(t *testing.T, ctx context.Context, c *cluster, h *history, key string) string {
	t.Helper()
	ops, _ := h.snapshot()
	id := ""
	for _, op := range ops {
		if op.OK {
			id = op.JobID
		}
	}
	if id == "" {
		t.Fatal("the setup job was not acknowledged")
	}
	var ds string
	err := waitFor(ctx, time.Minute, func() error {
		var j apiJob
		if err := c.getJSON(ctx, c.nodes[0], "/jobs/"+id, key, &j); err != nil {
			return err
		}
		if j.State != "succeeded" || j.Outputs["dataset"] == "" {
			return fmt.Errorf("setup job %s is %s %+v", id, j.State, j.Error)
		}
		ds = j.Outputs["dataset"]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// listJobs reads every job of the tenant from one node.
func listJobs(ctx context.Context, c *cluster, n *node, key string) (map[string]apiJob, error) {
	out := map[string]apiJob{}
	cursor := ""
	for {
		path := "/jobs?limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var list struct {
			Jobs       []apiJob `json:"jobs"`
			NextCursor *string  `json:"next_cursor"`
		}
		if err := c.getJSON(ctx, n, path, key, &list); err != nil {
			return nil, err
		}
		for _, j := range list.Jobs {
			out[j.ID] = j
		}
		if list.NextCursor == nil || *list.NextCursor == "" {
			return out, nil
		}
		cursor = *list.NextCursor
	}
}

// verifyBundle downloads a job's RunBundle from n and checks its size,
// sha256, CID and manifest hashes, and that its output dataset exists.
func verifyBundle(ctx context.Context, c *cluster, n *node, key string, j apiJob) (bundle.Execution, error) {
	var x bundle.Execution
	var b []byte
	err := waitFor(ctx, 30*time.Second, func() error {
		st, body, err := c.do(ctx, n, "GET", "/jobs/"+j.ID+"/runbundle", key, nil, nil)
		if err != nil {
			return err
		}
		if st != http.StatusOK {
			return fmt.Errorf("%d %s", st, body)
		}
		b = body
		return nil
	})
	if err != nil {
		return x, fmt.Errorf("job %s: download its RunBundle from %s: %w", j.ID, n.name, err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != j.RunBundle.SHA256 || int64(len(b)) != j.RunBundle.Size {
		return x, fmt.Errorf("job %s: RunBundle sha256 %s size %d, the job says %s size %d", j.ID, got, len(b), j.RunBundle.SHA256, j.RunBundle.Size)
	}
	rep, err := bundle.Verify(bytes.NewReader(b))
	if err != nil {
		return x, fmt.Errorf("job %s: RunBundle does not verify: %w", j.ID, err)
	}
	// runbundle.cid names the stored (sealed) object; the plain tar's CID
	// is the one of its SHA-256 (docs/storage.md).
	if plainCID, err := cas.CIDFromSHA256(j.RunBundle.SHA256); err != nil || !rep.Ref.CID.Equals(plainCID) {
		return x, fmt.Errorf("job %s: RunBundle CID %s, the job's sha256 %s names %s (%v)", j.ID, rep.Ref.CID, j.RunBundle.SHA256, plainCID, err)
	}
	if j.Type != "generate_dataset" {
		return rep.Manifest.Execution, nil
	}
	if ds := j.Outputs["dataset"]; ds == "" {
		return x, fmt.Errorf("job %s: succeeded generate_dataset without outputs.dataset", j.ID)
	} else if st, body, err := c.do(ctx, n, "GET", "/datasets/"+ds, key, nil, nil); err != nil || st != http.StatusOK {
		return x, fmt.Errorf("job %s: its dataset %s: %d %s %v", j.ID, ds, st, body, err)
	}
	return rep.Manifest.Execution, nil
}

// logSummary says what the run exercised, for the reader of -v output.
func logSummary(t *testing.T, ops []submitOp, obs []observation, final map[string]apiJob, runs []run) {
	failed := 0
	for _, op := range ops {
		if !op.OK {
			failed++
		}
	}
	states := map[string]int{}
	attempts := map[int]int{}
	for _, j := range final {
		states[j.State]++
		attempts[j.Attempts]++
	}
	perJob := map[string][]run{}
	perContainer := map[string]int{}
	for _, r := range runs {
		perJob[r.JobID] = append(perJob[r.JobID], r)
		perContainer[r.Container]++
	}
	multi := 0
	var maxOv time.Duration
	for _, id := range slices.Sorted(maps.Keys(perJob)) {
		rs := perJob[id]
		if len(rs) < 2 {
			continue
		}
		multi++
		slices.SortFunc(rs, func(a, b run) int { return a.Start.Compare(b.Start) })
		t.Logf("job %s ran %d times: %s", id, len(rs), describeRuns(rs))
		for a := range rs {
			for b := a + 1; b < len(rs); b++ {
				if ov := overlap(rs[a], rs[b]); rs[a].Token != rs[b].Token && ov > maxOv {
					maxOv = ov
				}
			}
		}
	}
	t.Logf("history: %d submission attempts (%d failed or indeterminate), %d state observations; final: %d jobs %v, attempts %v; %d runs %v, %d jobs run more than once, longest overlap of two runners %s",
		len(ops), failed, len(obs), len(final), states, attempts, len(runs), perContainer, multi, maxOv.Round(time.Millisecond))
}

// sleepUntil waits until t or ctx's end; it reports whether t was reached.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
