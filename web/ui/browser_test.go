package ui_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/pwmesh/pwmesh/node/nodetest"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
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

// A person in a real browser, against a real node: signs in with an API
// key, submits a job through the form, watches it succeed, downloads its
// RunBundle (its SHA-256 checked in the page), uploads a dataset with a
// hostile name that shows as text, fails to change anything without the
// anti-forgery token, and sees another tenant's job as "not found".
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and a browser")
	}
	chromium := chromiumPath()
	if chromium == "" {
		t.Skip("chromium is not installed (apt-get install chromium; .ci/run installs it): the browser test cannot run")
	}
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
	shots := os.Getenv(screenshotsEnv)

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
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// A confirmation (cancel a job?) is accepted; any other dialog (an
	// alert a hostile name would open) is counted and dismissed, so that
	// it cannot block the page.
	var dialogs atomic.Int32
	events := chromedp.Events(bctx, cdppage.JavascriptDialogOpening)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			confirm := string(ev.Type) == "confirm"
			if !confirm {
				dialogs.Add(1)
				t.Logf("dialog: %s %q", ev.Type, ev.Message)
			}
			_, _ = chromedp.Call(bctx, cdppage.HandleJavaScriptDialog, cdppage.HandleJavaScriptDialogParams{Accept: confirm})
		}
	}()

	// Each step has a minute at most, so that a missing element fails the
	// test instead of holding it.
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(bctx, time.Minute) }
	// Script errors and refusals of the content policy (an inline script
	// or style the page should not have) fail the test.
	var pageErrors []string
	var errMu sync.Mutex
	console := chromedp.Console(bctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				errMu.Lock()
				pageErrors = append(pageErrors, m.String())
				errMu.Unlock()
			}
		}
	}()
	defer func() {
		errMu.Lock()
		defer errMu.Unlock()
		for _, e := range pageErrors {
			t.Errorf("the page reported: %s", e)
		}
	}()

	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := step()
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(what, js string) string {
		t.Helper()
		sctx, cancel := step()
		defer cancel()
		v, err := chromedp.Run(sctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	// waitFor polls a predicate in the page until it holds; a navigation
	// (the job page reloads when its job ends) restarts the poll.
	waitFor := func(what, js string, limit time.Duration) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			left := time.Until(deadline)
			if left <= 0 {
				t.Fatalf("timed out after %s waiting for %s", limit, what)
			}
			_, err := chromedp.Run(bctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(left), chromedp.WithPollingInterval(50*time.Millisecond)))
			if err == nil {
				return
			}
			if errors.Is(err, chromedp.ErrPollingTimeout) || ctx.Err() != nil {
				where, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
				t.Fatalf("waiting for %s: %v; the page:\n%s", what, err, where)
			}
		}
	}
	shoot := func(name string) {
		t.Helper()
		if shots == "" {
			return
		}
		sctx, cancel := step()
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Sign in with the key.
	do("open the UI", chromedp.Navigate(n.URL+"/ui/"))
	waitFor("the sign-in page", `location.pathname === "/ui/login"`, 30*time.Second)
	if body := eval("read the sign-in page", `document.body.innerText`); strings.Contains(body, n.ID()) || strings.Contains(body, "acme") {
		t.Fatalf("the sign-in page shows the cluster:\n%s", body)
	}
	shoot("login")
	do("sign in", chromedp.SendKeys(chromedp.ID("key"), acme.Key), chromedp.Submit(chromedp.ID("key")))
	waitFor("the jobs page", `location.pathname === "/ui/jobs" && document.readyState === "complete"`, 30*time.Second)

	// Submit a generate_dataset job through the form.
	do("open the submit form", chromedp.Navigate(n.URL+"/ui/submit"))
	waitFor("the submit form", `!!document.getElementById("submit-button")`, 30*time.Second)
	do("fill the form",
		chromedp.Click(chromedp.CSS(`input[name="type"][value="generate_dataset"]`)),
		chromedp.SendKeys(chromedp.ID("p-generate_dataset-size"), "16"),
	)
	shoot("submit")
	do("submit", chromedp.Click(chromedp.ID("submit-button")))
	waitFor("the new job's page", `location.pathname.startsWith("/ui/jobs/job_")`, 30*time.Second)
	id := strings.TrimPrefix(eval("read the job's ID", `location.pathname`), "/ui/jobs/")

	// Its state follows by itself until it has succeeded; the page then
	// shows the bundle's link and image.
	waitFor("the job to succeed", `(document.getElementById("job-state") || {}).textContent === "succeeded" && !!document.getElementById("bundle-link")`, 3*time.Minute)
	mine := client.New(n.URL, acme.Key)
	job, err := mine.GetJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != scheduler.StateSucceeded || job.RunBundle == nil || job.Tenant != "acme" || string(job.Params) != `{"size":16}` {
		t.Fatalf("job %+v (params %s)", job, job.Params)
	}
	waitFor("the reconstruction image", `document.getElementById("job-image").complete && document.getElementById("job-image").naturalWidth === 16`, 30*time.Second)
	shoot("job")

	// The RunBundle, downloaded through the page's link with the session's
	// cookie, hashes to the job's runbundle.sha256.
	sum := eval("download the RunBundle", `(async () => {
		const r = await fetch(document.getElementById("bundle-link").href);
		if (!r.ok) { return "status " + r.status; }
		const h = await crypto.subtle.digest("SHA-256", await r.arrayBuffer());
		return Array.from(new Uint8Array(h), b => b.toString(16).padStart(2, "0")).join("");
	})()`)
	if sum != job.RunBundle.SHA256 {
		t.Fatalf("the downloaded RunBundle hashes to %s, the job says %s", sum, job.RunBundle.SHA256)
	}
	if shown := eval("read the page's hash", `document.getElementById("bundle-sha256").textContent`); shown != sum {
		t.Fatalf("the page shows sha256 %q", shown)
	}
	do("open the jobs page", chromedp.Navigate(n.URL+"/ui/jobs"))
	waitFor("the job in the list", `!!document.querySelector('tr[data-job="`+id+`"] .badge-ok')`, 30*time.Second)
	shoot("jobs")

	// A dataset named like markup uploads with a progress bar and shows as
	// text: no element made of it, no alert.
	file := filepath.Join(t.TempDir(), "measurement.npz")
	if err := os.WriteFile(file, []byte(strings.Repeat("pwmesh", 100000)), 0o644); err != nil {
		t.Fatal(err)
	}
	do("open the datasets page", chromedp.Navigate(n.URL+"/ui/datasets"))
	waitFor("the upload form", `!!document.getElementById("upload-button")`, 30*time.Second)
	do("upload",
		chromedp.SendKeys(chromedp.ID("up-name"), hostile),
		chromedp.SetUploadFiles(chromedp.ID("up-file"), []string{file}),
		chromedp.Click(chromedp.ID("upload-button")),
	)
	waitFor("the upload to finish", `location.search === "?ok=uploaded" && document.readyState === "complete"`, 60*time.Second)
	names := eval("read the names", `JSON.stringify(Array.from(document.querySelectorAll("#datasets-table td.ds-name"), td => td.textContent))`)
	if !strings.Contains(names, `"<img src=x onerror=alert(1)>"`) {
		t.Fatalf("the hostile name is not shown as text: %s", names)
	}
	if imgs := eval("count images", `String(document.querySelectorAll("#datasets-table img, img[src='x']").length)`); imgs != "0" {
		t.Fatalf("the hostile name made %s image elements", imgs)
	}
	shoot("datasets")
	if d := dialogs.Load(); d != 0 {
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
	codes := eval("delete without the token", `(async () => {
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
	do("open the jobs page", chromedp.Navigate(n.URL+"/ui/jobs"))
	row := `document.querySelector('tr[data-job="` + q1.ID + `"]')`
	waitFor("the waiting job and its reason", row+` && `+row+`.querySelector(".badge-queued") && `+row+`.querySelector(".reason").textContent.trim() !== ""`, 30*time.Second)
	if _, err := mine.CancelJob(ctx, q1.ID); err != nil {
		t.Fatal(err)
	}
	waitFor("the row to show the cancellation by itself", row+`.querySelector('[data-field="state"]').textContent === "cancelled"`, 60*time.Second)
	do("open the other waiting job", chromedp.Navigate(n.URL+"/ui/jobs/"+q2.ID))
	waitFor("its reason", `document.getElementById("job-reason").textContent.trim() !== ""`, 30*time.Second)
	do("cancel it", chromedp.Click(chromedp.CSS(`form[action$="/cancel"] button`)))
	waitFor("the cancelled job", `location.search === "?ok=cancelled" && document.getElementById("job-state").textContent === "cancelled"`, 30*time.Second)

	// Another tenant's job typed into the address bar is not found.
	do("open another tenant's job", chromedp.Navigate(n.URL+"/ui/jobs/"+theirs.ID))
	text := eval("read the page", `document.querySelector("main").innerText`)
	if !strings.Contains(text, "not found") || strings.Contains(text, "globex") {
		t.Fatalf("another tenant's job shows:\n%s", text)
	}

	if shots != "" {
		for _, p := range []string{"nodes", "usage"} {
			do("open "+p, chromedp.Navigate(n.URL+"/ui/"+p))
			waitFor(p, `document.readyState === "complete"`, 30*time.Second)
			shoot(p)
		}
		// The admin's pages, after a sign-out.
		do("sign out", chromedp.Navigate(n.URL+"/ui/logout"))
		waitFor("the sign-out page", `!!document.querySelector("main form button")`, 30*time.Second)
		do("confirm", chromedp.Click(chromedp.CSS("main form button")))
		waitFor("the sign-in page", `location.pathname === "/ui/login" && document.readyState === "complete"`, 30*time.Second)
		do("sign in as the admin", chromedp.SendKeys(chromedp.ID("key"), nodetest.AdminToken), chromedp.Submit(chromedp.ID("key")))
		waitFor("the jobs page", `location.pathname === "/ui/jobs" && document.readyState === "complete"`, 30*time.Second)
		for _, p := range []string{"keys", "tenants"} {
			do("open "+p, chromedp.Navigate(n.URL+"/ui/"+p))
			waitFor(p, `document.readyState === "complete"`, 30*time.Second)
			shoot(p)
		}
	}
}
