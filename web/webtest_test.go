package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/fsstore"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

// env is one API server over a real single-node Raft, FSM and fsstore.
type env struct {
	t       testing.TB
	url     string
	handler http.Handler
	srv     *web.Server
	fsm     *scheduler.FSM
	raft    *scheduler.Raft
	store   *fsstore.Store
	cluster *fakeCluster
	logs    *fakeLogs
	clock   *fakeClock
	reg     *prometheus.Registry

	admin, acme, globex string // secrets: admin (tenant admin), acme (free), globex (paid)
	nodeOnce            sync.Once
}

type option func(*web.Config, *web.Deps)

// testNow is the fake clock's start: mid-March 2026.
var testNow = time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)

func newEnv(t testing.TB, opts ...option) *env {
	t.Helper()
	fsm := scheduler.NewFSM()
	_, trans := raft.NewInmemTransport("")
	r, err := scheduler.OpenRaft(scheduler.RaftConfig{
		NodeID: "n1", Dir: t.TempDir(), Transport: trans, Bootstrap: true,
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
	}, fsm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown(); err != nil {
			t.Errorf("raft shutdown: %v", err)
		}
	})
	waitFor(t, 10*time.Second, "raft leadership", r.IsLeader)

	store, err := fsstore.New(t.TempDir(), fsstore.WithFsync(false))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		t: t, fsm: fsm, raft: r, store: store,
		cluster: &fakeCluster{h: web.Health{Node: "n1", Leader: "n1", Role: "leader", Members: 1, Ready: true}},
		logs:    &fakeLogs{logs: map[string][]byte{}},
		clock:   &fakeClock{now: testNow},
		reg:     prometheus.NewRegistry(),
	}
	// No rate limits: the fake clock never refills a bucket (limits_test.go
	// tests them on their own).
	cfg := web.Config{NodeID: "n1", Clock: e.clock, Registry: e.reg, RateLimits: map[string]web.RateLimit{}}
	deps := web.Deps{State: fsm, Writer: r, Store: store, Datasets: plainDatasets{e}, Cluster: e.cluster, Logs: e.logs, JobTypes: testJobTypes}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	srv, err := web.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	e.srv, e.handler = srv, srv.Handler()
	hs := httptest.NewServer(e.handler)
	t.Cleanup(hs.Close)
	e.url = hs.URL

	e.admin = e.addKey("admin", scheduler.PriorityPaid, true)
	e.acme = e.addKey("acme", scheduler.PriorityFree, false)
	e.globex = e.addKey("globex", scheduler.PriorityPaid, false)
	return e
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		case <-tick.C:
		}
	}
}

func (e *env) apply(c scheduler.Command) any {
	e.t.Helper()
	v, err := e.raft.Apply(context.Background(), c)
	if err != nil {
		e.t.Fatalf("apply %s: %v", c.Type(), err)
	}
	return v
}

func (e *env) addKey(tenant, tier string, admin bool) string {
	secret := web.NewKeySecret()
	e.apply(&scheduler.CreateKey{At: testNow, Key: scheduler.APIKey{
		Hash: web.HashKey(secret), Prefix: secret[:8], Tenant: tenant, Tier: tier, Admin: admin}})
	return secret
}

// resp is a read answer.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// do sends a request; key "" sends no Authorization header. Extra headers
// come in name, value pairs.
func (e *env) do(method, path, key string, body io.Reader, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// doJSON sends v (a string is sent as is) as the JSON body.
func (e *env) doJSON(method, path, key string, v any, hdr ...string) resp {
	e.t.Helper()
	var body io.Reader
	switch v := v.(type) {
	case nil:
	case string:
		body = strings.NewReader(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			e.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	return e.do(method, path, key, body, append([]string{"Content-Type", "application/json"}, hdr...)...)
}

// wantError checks an error answer's status and code.
func wantError(t testing.TB, r resp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var b struct {
		Error struct{ Code, Message string }
	}
	r.decode(t, &b)
	if b.Error.Code != code || b.Error.Message == "" {
		t.Fatalf("error %+v, want code %q and a message", b.Error, code)
	}
}

func wantStatus(t testing.TB, r resp, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
}

func (e *env) upload(key, name string, data []byte) scheduler.Dataset {
	e.t.Helper()
	r := e.do("POST", "/datasets?name="+name, key, bytes.NewReader(data), "Content-Type", "application/octet-stream")
	wantStatus(e.t, r, http.StatusCreated)
	var d scheduler.Dataset
	r.decode(e.t, &d)
	return d
}

func (e *env) submit(key string, req any, hdr ...string) scheduler.Job {
	e.t.Helper()
	r := e.doJSON("POST", "/jobs", key, req, hdr...)
	wantStatus(e.t, r, http.StatusAccepted)
	var j scheduler.Job
	r.decode(e.t, &j)
	return j
}

// runJob starts a queued job on node n1 (registered on first use) and
// returns its fencing token.
func (e *env) runJob(id string, at time.Time, gpus []int) uint64 {
	e.t.Helper()
	e.node()
	v := e.apply(&scheduler.AssignJob{At: at, JobID: id, Node: "n1", Incarnation: "inc1", GPUs: gpus, ExpiresAt: at.Add(time.Hour)})
	return v.(scheduler.Job).Lease.Token
}

// node registers the one node, n1, that runs jobs and holds content.
func (e *env) node() {
	e.nodeOnce.Do(func() {
		e.apply(&scheduler.RegisterNode{At: testNow, Node: scheduler.Node{
			ID: "n1", Region: "local", State: scheduler.NodeReady, Voter: true, Slots: 4, Incarnation: "inc1",
			GPUs: []scheduler.GPU{{Index: 0, UUID: "GPU-0", Model: "A100", MemoryMB: 81920}, {Index: 1, UUID: "GPU-1", Model: "A100", MemoryMB: 81920}},
		}})
	})
}

// held records n1's copy of ref, which makes it durable on a one-node mesh.
func (e *env) held(ref cas.Ref, kind string) {
	e.t.Helper()
	e.node()
	if _, err := e.raft.Apply(context.Background(), &scheduler.BlobStored{At: testNow, CID: ref.CID.String(), Size: ref.Size, Kind: kind, Node: "n1"}); err != nil &&
		!errors.Is(err, scheduler.ErrConflict) {
		e.t.Fatal(err)
	}
}

// plainDatasets stores datasets as they come (node/storage, which seals
// them, is tested with real nodes) and records n1's copy.
type plainDatasets struct{ e *env }

func (p plainDatasets) PutDataset(ctx context.Context, tenant string, r io.Reader) (scheduler.Dataset, error) {
	ref, err := p.e.store.Put(ctx, r)
	if err != nil {
		return scheduler.Dataset{}, err
	}
	p.e.held(ref, scheduler.BlobDataset)
	return scheduler.Dataset{Tenant: tenant, CID: ref.CID.String(), SHA256: ref.SHA256, Size: ref.Size}, nil
}

func (p plainDatasets) OpenDataset(ctx context.Context, d scheduler.Dataset) (io.ReadSeekCloser, error) {
	c, err := cas.ParseCID(d.CID)
	if err != nil {
		return nil, err
	}
	return p.e.store.Open(ctx, c)
}

// finishJob runs a queued job to success with bundle stored as its RunBundle.
func (e *env) finishJob(id string, start, end time.Time, gpus []int, bundle []byte) cas.Ref {
	e.t.Helper()
	tok := e.runJob(id, start, gpus)
	ref, err := e.store.Put(context.Background(), bytes.NewReader(bundle))
	if err != nil {
		e.t.Fatal(err)
	}
	e.held(ref, scheduler.BlobBundle)
	e.apply(&scheduler.CompleteJob{At: end, JobID: id, Token: tok, State: scheduler.StateSucceeded,
		Metrics:   map[string]any{"psnr_db": 30.5},
		RunBundle: &scheduler.BundleRef{CID: ref.CID.String(), SHA256: ref.SHA256, Size: ref.Size}})
	return ref
}

// sig is what must not change when a request is refused: the last applied
// Raft entry and the number of stored objects.
type sig struct {
	index   uint64
	objects int
}

func (e *env) sig() sig {
	e.t.Helper()
	n := 0
	if err := e.store.List(context.Background(), func(cas.Ref) error { n++; return nil }); err != nil {
		e.t.Fatal(err)
	}
	return sig{index: e.fsm.LastIndex(), objects: n}
}

// unchanged runs f and fails if it changed the state or the store.
func (e *env) unchanged(f func()) {
	e.t.Helper()
	before := e.sig()
	f()
	if after := e.sig(); after != before {
		e.t.Fatalf("state changed: before %+v, after %+v", before, after)
	}
}

type fakeCluster struct {
	mu sync.Mutex
	h  web.Health
}

func (c *fakeCluster) Health() web.Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.h
}

func (c *fakeCluster) set(h web.Health) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.h = h
}

// fakeLogs serves snapshots of in-memory logs.
type fakeLogs struct {
	mu   sync.Mutex
	logs map[string][]byte
}

func (l *fakeLogs) OpenLog(id string) (io.ReadCloser, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.logs[id]
	if !ok {
		return nil, fmt.Errorf("log of %s: %w", id, fs.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(bytes.Clone(b))), nil
}

func (l *fakeLogs) append(id, s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logs[id] = append(l.logs[id], s...)
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
