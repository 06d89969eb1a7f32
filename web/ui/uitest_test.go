package ui_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/fsstore"
	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
	"github.com/pwmesh/pwmesh/web"
	"github.com/pwmesh/pwmesh/web/ui"
)

// TestMain lets the cluster tests' jobs run in children of this binary.
func TestMain(m *testing.M) {
	nodetest.MaybeRunChild()
	goleak.VerifyTestMain(m)
}

// nodeID is the unit environment's node: the sign-in page must never name it.
const nodeID = "node-7f3a9c5e"

// env is a real API (web.Server over a single-node Raft, FSM and store)
// with the UI in front of it, served as a node serves them.
type env struct {
	t     testing.TB
	url   string
	raft  *scheduler.Raft
	fsm   *scheduler.FSM
	store *fsstore.Store
	clock *fakeClock
	logs  *fakeLogs
	api   *web.Server
	ui    *ui.UI

	admin, acme, globex string // key secrets: admin, acme (free), globex (paid)
	nodeOnce            sync.Once
}

var testNow = time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)

// testJobTypes is a small registry for the submit form.
var testJobTypes = []ui.JobType{
	{Name: "generate_dataset", Summary: "simulate a measurement", Params: []ui.Param{
		{Name: "size", Kind: ui.ParamInt, Default: "64"},
		{Name: "severity", Kind: ui.ParamChoice, Choices: []string{"mild", "moderate", "severe"}, Default: "moderate"},
	}},
	{Name: "reconstruct", Summary: "reconstruct a dataset", NeedsDataset: true, Params: []ui.Param{
		{Name: "iterations", Kind: ui.ParamInt, Default: "150"},
	}},
}

type envOption func(*ui.Config)

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	r := schedulertest.NewRaft(t)
	store, err := fsstore.New(t.TempDir(), fsstore.WithFsync(false))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, raft: r, fsm: r.FSM(), store: store, clock: &fakeClock{now: testNow}, logs: &fakeLogs{logs: map[string][]byte{}}}
	api, err := web.New(web.Config{NodeID: nodeID, Clock: e.clock, Registry: prometheus.NewRegistry(), RateLimits: map[string]web.RateLimit{}},
		web.Deps{State: e.fsm, Writer: r, Store: store, Datasets: plainDatasets{e}, Cluster: readyCluster{}, Logs: e.logs,
			JobTypes: map[string]web.JobType{"generate_dataset": {}, "reconstruct": {NeedsDataset: true}}})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ui.DeriveSessionKey([]byte("a secret every node of this mesh shares"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := ui.Config{SessionKey: key, Clock: e.clock}
	for _, o := range opts {
		o(&cfg)
	}
	u, err := ui.New(cfg, ui.Deps{API: api.Handler(), Identify: api.Identify, JobTypes: testJobTypes})
	if err != nil {
		t.Fatal(err)
	}
	e.api, e.ui = api, u
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, "/ui/") {
			u.Handler().ServeHTTP(w, r)
			return
		}
		api.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	e.url = hs.URL
	e.admin = e.addKey("admin", scheduler.PriorityPaid, true, nil)
	e.acme = e.addKey("acme", scheduler.PriorityFree, false, nil)
	e.globex = e.addKey("globex", scheduler.PriorityPaid, false, nil)
	return e
}

func (e *env) apply(c scheduler.Command) any {
	e.t.Helper()
	return schedulertest.MustApply(e.t, e.raft, c)
}

func (e *env) addKey(tenant, tier string, admin bool, expires *time.Time) string {
	e.t.Helper()
	secret := web.NewKeySecret()
	e.apply(&scheduler.CreateKey{At: testNow, Key: scheduler.APIKey{ID: "key_" + secret[4:14], Hash: web.HashKey(secret), Prefix: secret[:8],
		Tenant: tenant, Tier: tier, Admin: admin, Name: tenant + "-key", ExpiresAt: expires}})
	return secret
}

// node registers the node that holds content.
func (e *env) node() {
	e.nodeOnce.Do(func() {
		e.apply(&scheduler.RegisterNode{At: testNow, Node: scheduler.Node{ID: nodeID, Region: "local", State: scheduler.NodeReady,
			Voter: true, Slots: 4, Incarnation: "inc1",
			GPUs: []scheduler.GPU{{Index: 0, UUID: "GPU-0", Model: "A100-80GB", MemoryMB: 81920, Utilization: 42, TemperatureC: 55}}}})
	})
}

func (e *env) held(ref cas.Ref, kind string) {
	e.t.Helper()
	e.node()
	if _, err := e.raft.Apply(context.Background(), &scheduler.BlobStored{At: testNow, CID: ref.CID.String(), Size: ref.Size, Kind: kind, Node: nodeID}); err != nil &&
		!errors.Is(err, scheduler.ErrConflict) {
		e.t.Fatal(err)
	}
}

// plainDatasets stores datasets as they come and records the node's copy.
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

// fakeLogs serves snapshots of in-memory job logs.
type fakeLogs struct {
	mu   sync.Mutex
	logs map[string][]byte
}

func (l *fakeLogs) OpenLog(id string) (io.ReadCloser, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.logs[id]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return io.NopCloser(bytes.NewReader(bytes.Clone(b))), nil
}

func (l *fakeLogs) append(id, s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logs[id] = append(l.logs[id], s...)
}

type readyCluster struct{}

func (readyCluster) Health() web.Health {
	return web.Health{Node: nodeID, Leader: nodeID, Role: "leader", Members: 1, Ready: true}
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

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// apiCall sends a request straight to the API with a key.
func (e *env) apiCall(method, path, key string, body io.Reader, ctype string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// upload stores a dataset for key through the API.
func (e *env) upload(key, name string, data []byte) scheduler.Dataset {
	e.t.Helper()
	st, b := e.apiCall("POST", "/datasets?name="+url.QueryEscape(name), key, bytes.NewReader(data), "application/octet-stream")
	if st != http.StatusCreated {
		e.t.Fatalf("upload: %d %s", st, b)
	}
	return decode[scheduler.Dataset](e.t, b)
}

// submit queues a job for key through the API.
func (e *env) submit(key, body string) scheduler.Job {
	e.t.Helper()
	st, b := e.apiCall("POST", "/jobs", key, strings.NewReader(body), "application/json")
	if st != http.StatusAccepted {
		e.t.Fatalf("submit: %d %s", st, b)
	}
	return decode[scheduler.Job](e.t, b)
}

// finish runs a queued job to success with bundle as its RunBundle.
func (e *env) finish(id string, bundle []byte) cas.Ref {
	e.t.Helper()
	e.node()
	v := e.apply(&scheduler.AssignJob{At: testNow, JobID: id, Node: nodeID, Incarnation: "inc1", ExpiresAt: testNow.Add(time.Hour)})
	tok := v.(scheduler.Job).Lease.Token
	ref, err := e.store.Put(context.Background(), bytes.NewReader(bundle))
	if err != nil {
		e.t.Fatal(err)
	}
	e.held(ref, scheduler.BlobBundle)
	e.apply(&scheduler.CompleteJob{At: testNow.Add(time.Minute), JobID: id, Token: tok, State: scheduler.StateSucceeded,
		Metrics:   map[string]any{"psnr_db": 31.25},
		RunBundle: &scheduler.BundleRef{CID: ref.CID.String(), SHA256: ref.SHA256, Size: ref.Size}})
	return ref
}

// testPNG is a small grey image.
func testPNG(t testing.TB) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 8, 8))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 4)
	}
	img.SetGray(0, 0, color.Gray{Y: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// testBundle is a tar with a manifest, the ground truth and the
// reconstruction (the one the job page shows).
func testBundle(t testing.TB, xhat []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range []struct {
		name string
		data []byte
	}{{"runbundle_manifest.json", []byte(`{"version":"0.3.0"}`)}, {"artifacts/x_gt.png", []byte("not the one")}, {"artifacts/x_hat.png", xhat}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// browser is an HTTP client with its own cookies that does not follow
// redirects, so that tests see them.
type browser struct {
	t    testing.TB
	base string
	c    *http.Client
}

func newBrowser(t testing.TB, base string) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is an answer as a browser sees it.
type page struct {
	status int
	header http.Header
	body   string
}

func (p page) location() string { return p.header.Get("Location") }

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return page{status: res.StatusCode, header: res.Header, body: string(body)}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, err := http.NewRequest("GET", b.base+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	req, err := http.NewRequest("POST", b.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// send sends any request with extra headers in name, value pairs.
func (b *browser) send(method, path string, body io.Reader, hdr ...string) page {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

var hiddenToken = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
var metaToken = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// signIn signs in with key through the form and returns where it led.
func (b *browser) signIn(key, next string) page {
	b.t.Helper()
	p := b.get("/ui/login?next=" + url.QueryEscape(next))
	if p.status != http.StatusOK {
		b.t.Fatalf("sign-in page: %d", p.status)
	}
	m := hiddenToken.FindStringSubmatch(p.body)
	if m == nil {
		b.t.Fatal("the sign-in page has no token")
	}
	return b.post("/ui/login", url.Values{"csrf": {m[1]}, "key": {key}, "next": {next}})
}

// mustSignIn signs in and fails unless it succeeded.
func (b *browser) mustSignIn(key string) {
	b.t.Helper()
	p := b.signIn(key, "/ui/jobs")
	if p.status != http.StatusSeeOther || p.location() != "/ui/jobs" {
		b.t.Fatalf("sign-in: %d to %q: %s", p.status, p.location(), p.body)
	}
}

// csrf reads the session's token from a page.
func (b *browser) csrf() string {
	b.t.Helper()
	p := b.get("/ui/jobs")
	m := metaToken.FindStringSubmatch(p.body)
	if m == nil {
		b.t.Fatalf("no anti-forgery token on the jobs page (%d)", p.status)
	}
	return m[1]
}

// sessionCookie is the browser's session cookie for base.
func (b *browser) sessionCookie() *http.Cookie {
	u, _ := url.Parse(b.base + "/ui/")
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "pwmesh_session" {
			return c
		}
	}
	return nil
}

// adopt takes a session cookie made elsewhere (another browser, another
// node), as the UI sets it.
func (b *browser) adopt(c *http.Cookie) {
	b.t.Helper()
	u, _ := url.Parse(b.base + "/ui/")
	cc := *c
	cc.Path = "/ui/"
	b.c.Jar.SetCookies(u, []*http.Cookie{&cc})
}

func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func wantStatus(t testing.TB, p page, status int) {
	t.Helper()
	if p.status != status {
		t.Fatalf("status %d, want %d; body:\n%s", p.status, status, p.body)
	}
}

func wantContains(t testing.TB, p page, parts ...string) {
	t.Helper()
	for _, s := range parts {
		if !strings.Contains(p.body, s) {
			t.Errorf("page lacks %q; body:\n%s", s, p.body)
		}
	}
}
