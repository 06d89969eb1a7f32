package ui_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/pwmesh/pwmesh/node"
	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
	"github.com/pwmesh/pwmesh/web/oidc/oidctest"
)

// chromiumPath finds the browser the browser test drives (Debian's
// chromium; .ci/run installs it).
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// screenshotsEnv names a folder where TestBrowser leaves a screenshot of
// each main page (docs/ui/ is made this way).
const screenshotsEnv = "PWMESH_UI_SCREENSHOTS"

// needChromium returns the browser a browser test drives, skipping the
// test where there is none (or under -short).
func needChromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a node and a browser")
	}
	chromium := chromiumPath()
	if chromium == "" {
		t.Skip("chromium is not installed (apt-get install chromium; .ci/run installs it): the browser test cannot run")
	}
	return chromium
}

// chrome is a headless chromium with a fresh profile, driven through
// chromedp, and the steps a browser test takes in it. Script errors and
// refusals of the content policy fail the test; a confirmation is
// accepted, any other dialog counted and dismissed.
type chrome struct {
	t     *testing.T
	ctx   context.Context // the test's deadline
	bctx  context.Context // the browser's tab
	shots string          // where shoot leaves screenshots ("": nowhere)

	dialogs atomic.Int32 // dialogs other than confirmations
	mu      sync.Mutex
	errors  []string // what the page reported
}

// startChrome starts chromium under ctx; it stops at test cleanup.
func startChrome(t *testing.T, ctx context.Context, chromium, shots string) *chrome {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	)...)
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	c := &chrome{t: t, ctx: ctx, bctx: bctx, shots: shots}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		wg.Wait()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// A confirmation (cancel a job?) is accepted; any other dialog (an
	// alert a hostile name would open) is counted and dismissed, so that
	// it cannot block the page.
	events := chromedp.Events(bctx, cdppage.JavascriptDialogOpening)
	console := chromedp.Console(bctx)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ev, err := range events {
			if err != nil {
				return
			}
			confirm := string(ev.Type) == "confirm"
			if !confirm {
				c.dialogs.Add(1)
				t.Logf("dialog: %s %q", ev.Type, ev.Message)
			}
			_, _ = chromedp.Call(bctx, cdppage.HandleJavaScriptDialog, cdppage.HandleJavaScriptDialogParams{Accept: confirm})
		}
	}()
	// Script errors and refusals of the content policy (an inline script
	// or style the page should not have) fail the test.
	go func() {
		defer wg.Done()
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				c.mu.Lock()
				c.errors = append(c.errors, m.String())
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, e := range c.errors {
			t.Errorf("the page reported: %s", e)
		}
	})
	return c
}

// step bounds one step to a minute, so that a missing element fails the
// test instead of holding it.
func (c *chrome) step() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.bctx, time.Minute)
}

// do runs actions as one step.
func (c *chrome) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	sctx, cancel := c.step()
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates js in the page (awaiting a promise) to a string.
func (c *chrome) eval(what, js string) string {
	c.t.Helper()
	sctx, cancel := c.step()
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitFor polls a predicate in the page until it holds; a navigation
// (the job page reloads when its job ends) restarts the poll.
func (c *chrome) waitFor(what, js string, limit time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			c.t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		_, err := chromedp.Run(c.bctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(left), chromedp.WithPollingInterval(50*time.Millisecond)))
		if err == nil {
			return
		}
		if errors.Is(err, chromedp.ErrPollingTimeout) || c.ctx.Err() != nil {
			where, _ := chromedp.Run(c.bctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
			c.t.Fatalf("waiting for %s: %v; the page:\n%s", what, err, where)
		}
	}
}

// shoot leaves a screenshot of the page as name.png in c.shots.
func (c *chrome) shoot(name string) {
	c.t.Helper()
	if c.shots == "" {
		return
	}
	sctx, cancel := c.step()
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(c.shots, name+".png"), png, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// cookie is the browser's cookie name for the UI at base (nil: none).
func (c *chrome) cookie(base, name string) *network.Cookie {
	c.t.Helper()
	sctx, cancel := c.step()
	defer cancel()
	res, err := chromedp.Call(sctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/ui/"}})
	if err != nil {
		c.t.Fatalf("read the cookies: %v", err)
	}
	for _, k := range res.Cookies {
		if k.Name == name {
			return k
		}
	}
	return nil
}

// submitGenerateDataset submits a generate_dataset job of size 16
// through the form (signed in already), follows it on its page until it
// has succeeded and shows its bundle, and returns its ID.
func (c *chrome) submitGenerateDataset(base string) string {
	c.t.Helper()
	c.do("open the submit form", chromedp.Navigate(base+"/ui/submit"))
	c.waitFor("the submit form", `!!document.getElementById("submit-button")`, 30*time.Second)
	c.do("fill the form",
		chromedp.Click(chromedp.CSS(`input[name="type"][value="generate_dataset"]`)),
		chromedp.SendKeys(chromedp.ID("p-generate_dataset-size"), "16"),
	)
	c.shoot("submit")
	c.do("submit", chromedp.Click(chromedp.ID("submit-button")))
	c.waitFor("the new job's page", `location.pathname.startsWith("/ui/jobs/job_")`, 30*time.Second)
	id := strings.TrimPrefix(c.eval("read the job's ID", `location.pathname`), "/ui/jobs/")
	// Its state follows by itself until it has succeeded; the page then
	// shows the bundle's link and image.
	c.waitFor("the job to succeed", `(document.getElementById("job-state") || {}).textContent === "succeeded" && !!document.getElementById("bundle-link")`, 3*time.Minute)
	return id
}

// bundleSHA256 downloads the RunBundle through the job page's link, with
// the session's cookie, and returns its SHA-256 in hex; it fails unless
// the page shows the same hash.
func (c *chrome) bundleSHA256() string {
	c.t.Helper()
	sum := c.eval("download the RunBundle", `(async () => {
		const r = await fetch(document.getElementById("bundle-link").href);
		if (!r.ok) { return "status " + r.status; }
		const h = await crypto.subtle.digest("SHA-256", await r.arrayBuffer());
		return Array.from(new Uint8Array(h), b => b.toString(16).padStart(2, "0")).join("");
	})()`)
	if shown := c.eval("read the page's hash", `document.getElementById("bundle-sha256").textContent`); shown != sum {
		c.t.Fatalf("the page shows sha256 %q, the download hashes to %s", shown, sum)
	}
	return sum
}

// A person in a real browser, against a real node: signs in with an API
// key, submits a job through the form, watches it succeed, downloads its
// RunBundle (its SHA-256 checked in the page), uploads a dataset with a
// hostile name that shows as text, fails to change anything without the
// anti-forgery token, and sees another tenant's job as "not found".
func TestBrowser(t *testing.T) {
	chromium := needChromium(t)
	t.Parallel()
	c := nodetest.Start(t, nodetest.Spec{Voter: true, GPUs: "fake:1xA100-80GB,1xH100-80GB"})
	c.WaitForLeader(60 * time.Second)
	n := c.Nodes[0]
	c.WaitReady(n, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	acme, err := n.Client.CreateKeyWith(ctx, client.KeyRequest{Tenant: "acme", Tier: "paid", Name: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	globexKey, err := n.Client.CreateKey(ctx, "globex", "paid")
	if err != nil {
		t.Fatal(err)
	}
	globex := client.New(n.URL, globexKey.Key)
	theirs, err := globex.SubmitJob(ctx, scheduler.JobRequest{Type: "generate_dataset"}, "")
	if err != nil {
		t.Fatal(err)
	}
	b := startChrome(t, ctx, chromium, os.Getenv(screenshotsEnv))

	// Sign in with the key.
	b.do("open the UI", chromedp.Navigate(n.URL+"/ui/"))
	b.waitFor("the sign-in page", `location.pathname === "/ui/login"`, 30*time.Second)
	if body := b.eval("read the sign-in page", `document.body.innerText`); strings.Contains(body, n.ID()) || strings.Contains(body, "acme") {
		t.Fatalf("the sign-in page shows the cluster:\n%s", body)
	}
	b.shoot("login")
	b.do("sign in", chromedp.SendKeys(chromedp.ID("key"), acme.Key), chromedp.Submit(chromedp.ID("key")))
	b.waitFor("the jobs page", `location.pathname === "/ui/jobs" && document.readyState === "complete"`, 30*time.Second)

	// A generate_dataset job submitted through the form succeeds.
	id := b.submitGenerateDataset(n.URL)
	mine := client.New(n.URL, acme.Key)
	job, err := mine.GetJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != scheduler.StateSucceeded || job.RunBundle == nil || job.Tenant != "acme" || string(job.Params) != `{"size":16}` {
		t.Fatalf("job %+v (params %s)", job, job.Params)
	}
	b.waitFor("the reconstruction image", `document.getElementById("job-image").complete && document.getElementById("job-image").naturalWidth === 16`, 30*time.Second)
	b.shoot("job")

	// The RunBundle, downloaded through the page's link with the session's
	// cookie, hashes to the job's runbundle.sha256.
	if sum := b.bundleSHA256(); sum != job.RunBundle.SHA256 {
		t.Fatalf("the downloaded RunBundle hashes to %s, the job says %s", sum, job.RunBundle.SHA256)
	}
	b.do("open the jobs page", chromedp.Navigate(n.URL+"/ui/jobs"))
	b.waitFor("the job in the list", `!!document.querySelector('tr[data-job="`+id+`"] .badge-ok')`, 30*time.Second)
	b.shoot("jobs")

	// A dataset named like markup uploads with a progress bar and shows as
	// text: no element made of it, no alert.
	file := filepath.Join(t.TempDir(), "measurement.npz")
	if err := os.WriteFile(file, []byte(strings.Repeat("pwmesh", 100000)), 0o644); err != nil {
		t.Fatal(err)
	}
	b.do("open the datasets page", chromedp.Navigate(n.URL+"/ui/datasets"))
	b.waitFor("the upload form", `!!document.getElementById("upload-button")`, 30*time.Second)
	b.do("upload",
		chromedp.SendKeys(chromedp.ID("up-name"), hostile),
		chromedp.SetUploadFiles(chromedp.ID("up-file"), []string{file}),
		chromedp.Click(chromedp.ID("upload-button")),
	)
	b.waitFor("the upload to finish", `location.search === "?ok=uploaded" && document.readyState === "complete"`, 60*time.Second)
	names := b.eval("read the names", `JSON.stringify(Array.from(document.querySelectorAll("#datasets-table td.ds-name"), td => td.textContent))`)
	if !strings.Contains(names, `"<img src=x onerror=alert(1)>"`) {
		t.Fatalf("the hostile name is not shown as text: %s", names)
	}
	if imgs := b.eval("count images", `String(document.querySelectorAll("#datasets-table img, img[src='x']").length)`); imgs != "0" {
		t.Fatalf("the hostile name made %s image elements", imgs)
	}
	b.shoot("datasets")
	if d := b.dialogs.Load(); d != 0 {
		t.Fatalf("%d dialogs opened", d)
	}
	var ds scheduler.Dataset
	all, err := mine.ListDatasets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range all {
		if d.Name == hostile {
			ds = d
		}
	}
	if ds.ID == "" || ds.Size != 600000 {
		t.Fatalf("the uploaded dataset: %+v", ds)
	}

	// A state change without the anti-forgery token fails and changes
	// nothing: a script's DELETE, a form's POST.
	codes := b.eval("delete without the token", `(async () => {
		const a = await fetch("/ui/api/datasets/`+ds.ID+`", {method: "DELETE"});
		const b = await fetch("/ui/datasets/`+ds.ID+`/delete", {method: "POST", body: new URLSearchParams({csrf: "forged"})});
		const c = await fetch("/ui/submit", {method: "POST", body: new URLSearchParams({type: "generate_dataset"})});
		return [a.status, b.status, c.status].join(",");
	})()`)
	if codes != "403,403,403" {
		t.Fatalf("state changes without the token answered %s, want 403s", codes)
	}
	if _, err := mine.GetDataset(ctx, ds.ID); err != nil {
		t.Fatalf("the dataset is gone: %v", err)
	}
	if jobs, _, err := mine.ListJobs(ctx, client.ListJobsOptions{}); err != nil || len(jobs) != 1 {
		t.Fatalf("jobs %d, %v: a forged submission made one", len(jobs), err)
	}

	// A job no node can run waits in the queue, and says why; the jobs
	// page follows it live, and its page cancels it.
	stuck := scheduler.JobRequest{Type: "generate_dataset", Resources: scheduler.Resources{GPUs: 1, GPUModel: "T4-16GB"}}
	q1, err := mine.SubmitJob(ctx, stuck, "")
	if err != nil {
		t.Fatal(err)
	}
	q2, err := mine.SubmitJob(ctx, stuck, "")
	if err != nil {
		t.Fatal(err)
	}
	b.do("open the jobs page", chromedp.Navigate(n.URL+"/ui/jobs"))
	row := `document.querySelector('tr[data-job="` + q1.ID + `"]')`
	b.waitFor("the waiting job and its reason", row+` && `+row+`.querySelector(".badge-queued") && `+row+`.querySelector(".reason").textContent.trim() !== ""`, 30*time.Second)
	if _, err := mine.CancelJob(ctx, q1.ID); err != nil {
		t.Fatal(err)
	}
	b.waitFor("the row to show the cancellation by itself", row+`.querySelector('[data-field="state"]').textContent === "cancelled"`, 60*time.Second)
	b.do("open the other waiting job", chromedp.Navigate(n.URL+"/ui/jobs/"+q2.ID))
	b.waitFor("its reason", `document.getElementById("job-reason").textContent.trim() !== ""`, 30*time.Second)
	b.do("cancel it", chromedp.Click(chromedp.CSS(`form[action$="/cancel"] button`)))
	b.waitFor("the cancelled job", `location.search === "?ok=cancelled" && document.getElementById("job-state").textContent === "cancelled"`, 30*time.Second)

	// Another tenant's job typed into the address bar is not found.
	b.do("open another tenant's job", chromedp.Navigate(n.URL+"/ui/jobs/"+theirs.ID))
	text := b.eval("read the page", `document.querySelector("main").innerText`)
	if !strings.Contains(text, "not found") || strings.Contains(text, "globex") {
		t.Fatalf("another tenant's job shows:\n%s", text)
	}

	if b.shots != "" {
		for _, p := range []string{"nodes", "usage"} {
			b.do("open "+p, chromedp.Navigate(n.URL+"/ui/"+p))
			b.waitFor(p, `document.readyState === "complete"`, 30*time.Second)
			b.shoot(p)
		}
		// The admin's pages, after a sign-out.
		b.do("sign out", chromedp.Navigate(n.URL+"/ui/logout"))
		b.waitFor("the sign-out page", `!!document.querySelector("main form button")`, 30*time.Second)
		b.do("confirm", chromedp.Click(chromedp.CSS("main form button")))
		b.waitFor("the sign-in page", `location.pathname === "/ui/login" && document.readyState === "complete"`, 30*time.Second)
		b.do("sign in as the admin", chromedp.SendKeys(chromedp.ID("key"), nodetest.AdminToken), chromedp.Submit(chromedp.ID("key")))
		b.waitFor("the jobs page", `location.pathname === "/ui/jobs" && document.readyState === "complete"`, 30*time.Second)
		for _, p := range []string{"keys", "tenants"} {
			b.do("open "+p, chromedp.Navigate(n.URL+"/ui/"+p))
			b.waitFor(p, `document.readyState === "complete"`, 30*time.Second)
			b.shoot(p)
		}
	}
}

// People sign in through a real OpenID Connect provider in a real
// browser, against a real node: a member of a tenant opens the UI, is sent
// to sign-in, clicks the provider's button and comes back signed in as
// their tenant (the provider signs in whoever the test queued and sends
// the browser straight back with a code); submits a job through the form,
// watches it succeed and checks its RunBundle's SHA-256; downloads the
// invoice's CSV; signs out, which revokes the key minted for the session.
// Someone whose claim names a tenant the mesh does not have sees that and
// nothing else, and has no session. An admin by group sees the admin
// pages, which a member does not.
func TestBrowserSignInThroughProvider(t *testing.T) {
	chromium := needChromium(t)
	t.Parallel()
	p := oidctest.Start(t)
	secret := p.SecretFile(t)
	c := nodetest.Start(t, nodetest.Spec{Voter: true, Configure: func(cfg *node.Config) {
		cfg.OIDCIssuer, cfg.OIDCClientID, cfg.OIDCClientSecretFile = p.Issuer(), p.ClientID, secret
		cfg.OIDCAdminGroup = oidctest.AdminGroup
	}})
	c.WaitForLeader(60 * time.Second)
	n := c.Nodes[0]
	c.WaitReady(n, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// An operator made tenant acme, paid; its key reads the people's jobs.
	ops, err := n.Client.CreateKeyWith(ctx, client.KeyRequest{Tenant: "acme", Tier: "paid", Name: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	acme := client.New(n.URL, ops.Key)
	keyNamed := func(name string) (client.KeyInfo, bool) {
		t.Helper()
		keys, err := n.Client.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if k.Name == name {
				return k, true
			}
		}
		return client.KeyInfo{}, false
	}
	b := startChrome(t, ctx, chromium, "")

	// signIn opens the UI as a person who is not signed in and clicks the
	// provider's button, u queued at the provider. (oidctest's provider
	// takes one sign-in at a time: this test makes them in turn.)
	signIn := func(u *oidctest.User) {
		t.Helper()
		p.Queue(u)
		b.do("open the UI", chromedp.Navigate(n.URL+"/ui/"))
		b.waitFor("the sign-in page", `location.pathname === "/ui/login" && document.readyState === "complete"`, 30*time.Second)
		if s := b.eval("read the provider's button", `(document.querySelector(".providers a") || {}).textContent || ""`); s != "Sign in with single sign-on" {
			t.Fatalf("the sign-in page's provider button says %q", s)
		}
		b.do("sign in through the provider", chromedp.Click(chromedp.CSS(".providers a")))
	}
	const signedIn = `location.pathname === "/ui/jobs" && document.readyState === "complete" && !!document.querySelector(".who-tenant")`
	const adminLinks = `String(document.querySelectorAll('nav a[href="/ui/keys"], nav a[href="/ui/tenants"]').length)`

	// A member of acme signs in through the provider and lands on the jobs
	// page as acme, with no admin page in sight.
	signIn(&oidctest.User{Subject: "u-ann", Email: "ann@acme.example", Name: "Ann", Tenant: "acme", Groups: []string{"staff"}})
	b.waitFor("the jobs page, signed in", signedIn, 30*time.Second)
	if who := b.eval("read who is signed in", `document.querySelector(".who-tenant").lastChild.textContent + "|" + document.querySelector(".who-name").textContent.trim()`); who != "acme|Ann" {
		t.Fatalf("signed in as %q, want acme|Ann", who)
	}
	k, ok := keyNamed("oidc:ann@acme.example")
	if !ok || k.Tenant != "acme" || k.Admin || k.Tier != "paid" {
		t.Fatalf("the session's key: %+v (found %v)", k, ok)
	}
	if l := b.eval("count the admin links", adminLinks); l != "0" {
		t.Fatalf("a member's navigation has %s admin links", l)
	}
	b.do("open the tenants page", chromedp.Navigate(n.URL+"/ui/tenants"))
	if h := b.eval("read the tenants page", `document.querySelector("main h1").textContent + "|" + document.querySelectorAll('form[action^="/ui/tenants/"]').length`); h != "Forbidden|0" {
		t.Fatalf("a member's tenants page: %q", h)
	}

	// A job through the form, followed to success; its RunBundle, fetched
	// with the session's cookie, hashes to the job's runbundle.sha256.
	id := b.submitGenerateDataset(n.URL)
	job, err := acme.GetJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != scheduler.StateSucceeded || job.RunBundle == nil || job.Tenant != "acme" {
		t.Fatalf("job %+v", job)
	}
	if sum := b.bundleSHA256(); sum != job.RunBundle.SHA256 {
		t.Fatalf("the downloaded RunBundle hashes to %s, the job says %s", sum, job.RunBundle.SHA256)
	}

	// The usage page's invoice link downloads the tenant's CSV.
	b.do("open the usage page", chromedp.Navigate(n.URL+"/ui/usage"))
	b.waitFor("the invoice's CSV link", `!!document.getElementById("invoice-csv")`, 30*time.Second)
	csv := b.eval("download the invoice's CSV", `(async () => {
		const r = await fetch(document.getElementById("invoice-csv").href);
		return r.status + " " + r.headers.get("Content-Disposition") + "\n" + await r.text();
	})()`)
	if !strings.HasPrefix(csv, "200 attachment; filename=invoice-acme-") || !strings.Contains(csv, "\nitem,quantity,free,billable,unit_price,amount\n") {
		t.Fatalf("the invoice's CSV:\n%s", csv)
	}

	// Signing out clears the cookie and revokes the session's key: the
	// cookie, kept and sent again, carries a key the API refuses (401 in
	// the API's own words, not the UI's "session expired").
	ck := b.cookie(n.URL, "pwmesh_session")
	if ck == nil || !ck.HTTPOnly || ck.SameSite != network.CookieSameSiteLax || ck.Path != "/ui/" {
		t.Fatalf("the session cookie: %+v", ck)
	}
	kept := newBrowser(t, n.URL)
	kept.adopt(&http.Cookie{Name: ck.Name, Value: ck.Value})
	wantStatus(t, kept.get("/ui/api/jobs"), http.StatusOK)
	b.do("open the jobs page", chromedp.Navigate(n.URL+"/ui/jobs"))
	b.waitFor("the jobs page", signedIn, 30*time.Second)
	b.do("sign out", chromedp.Click(chromedp.CSS(".who form button")))
	b.waitFor("the signed-out page", `location.pathname === "/ui/login" && location.search.includes("signed_out=1") && document.readyState === "complete"`, 30*time.Second)
	if b.cookie(n.URL, "pwmesh_session") != nil {
		t.Fatal("the session cookie outlived sign-out")
	}
	if k, ok := keyNamed("oidc:ann@acme.example"); ok {
		t.Fatalf("the session's key outlived sign-out: %+v", k)
	}
	var last page
	nodetest.WaitFor(t, 10*time.Second, "the API to refuse the session's key", func() bool {
		last = kept.get("/ui/api/jobs")
		return last.status == http.StatusUnauthorized
	})
	if !strings.Contains(last.body, `"code":"unauthorized"`) {
		t.Fatalf("the revoked key's answer: %s", last.body)
	}

	// Someone whose claim names a tenant the mesh does not have (an admin
	// by group, even) signs in at the provider and sees only that: no
	// navigation, no job, no node, no tenant; and has no session.
	before, err := n.Client.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	signIn(&oidctest.User{Subject: "u-eve", Email: "eve@initech.example", Name: "Eve", Tenant: "initech", Groups: []string{oidctest.AdminGroup}})
	b.waitFor("the refusal", `location.pathname === "/ui/callback" && document.readyState === "complete" && !!document.querySelector("main h1")`, 30*time.Second)
	text := b.eval("read the refusal", `document.querySelector("main").innerText`)
	html := b.eval("read the refusal's markup", `document.documentElement.outerHTML`)
	if !strings.Contains(text, "not assigned to a tenant") {
		t.Fatalf("the refusal says:\n%s", text)
	}
	if nav := b.eval("look for navigation", `String(document.querySelectorAll("nav, .who, form, table").length)`); nav != "0" {
		t.Fatalf("the refusal has %s navigation, forms or tables:\n%s", nav, html)
	}
	for _, leak := range []string{"acme", "initech", n.ID(), id, "/ui/jobs", "Sign out"} {
		if strings.Contains(html, leak) {
			t.Errorf("the refusal shows %q:\n%s", leak, html)
		}
	}
	if b.cookie(n.URL, "pwmesh_session") != nil {
		t.Fatal("the refused sign-in left a session cookie")
	}
	b.do("open the jobs page", chromedp.Navigate(n.URL+"/ui/jobs"))
	b.waitFor("the sign-in page", `location.pathname === "/ui/login" && document.readyState === "complete"`, 30*time.Second)
	if after, err := n.Client.ListKeys(ctx); err != nil || len(after) != len(before) {
		t.Fatalf("keys before %d, after %d (%v): the refused sign-in made one", len(before), len(after), err)
	}

	// An admin by group sees the admin pages: every key, and the tenants'
	// forms.
	signIn(&oidctest.User{Subject: "u-bob", Email: "bob@acme.example", Name: "Bob", Tenant: "acme", Groups: []string{"staff", oidctest.AdminGroup}})
	b.waitFor("the jobs page, signed in", signedIn, 30*time.Second)
	if l := b.eval("count the admin links", adminLinks); l != "2" {
		t.Fatalf("an admin's navigation has %s admin links, want Keys and Tenants", l)
	}
	if k, ok := keyNamed("oidc:bob@acme.example"); !ok || !k.Admin || k.Tenant != "acme" {
		t.Fatalf("the admin's session key: %+v (found %v)", k, ok)
	}
	b.do("open the keys page", chromedp.Navigate(n.URL+"/ui/keys"))
	b.waitFor("the keys page", `document.readyState === "complete" && !!document.getElementById("k-tenant")`, 30*time.Second)
	if keys := b.eval("read the keys", `document.querySelector("main").innerText`); !strings.Contains(keys, "oidc:bob@acme.example") || !strings.Contains(keys, "ops") {
		t.Fatalf("the admin's keys page:\n%s", keys)
	}
	b.do("open the tenants page", chromedp.Navigate(n.URL+"/ui/tenants"))
	b.waitFor("the tenants page", `document.readyState === "complete" && !!document.querySelector('form[action="/ui/tenants/acme"]')`, 30*time.Second)
	b.do("sign out", chromedp.Click(chromedp.CSS(".who form button")))
	b.waitFor("the signed-out page", `location.pathname === "/ui/login" && location.search.includes("signed_out=1")`, 30*time.Second)
	if _, ok := keyNamed("oidc:bob@acme.example"); ok {
		t.Fatal("the admin's session key outlived sign-out")
	}
	if d := b.dialogs.Load(); d != 0 {
		t.Fatalf("%d dialogs opened", d)
	}
}
