package ui_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
)

const hostile = `<img src=x onerror=alert(1)>`

// Strings a user chose (a dataset's name, a job's params, the API's
// error messages quoting them) render as text on every page.
func TestHostileStringsRenderAsText(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.upload(e.acme, hostile, []byte("measurement"))
	b := newBrowser(t, e.url)
	b.mustSignIn(e.acme)
	escaped := "&lt;img src=x onerror=alert(1)&gt;"
	for _, path := range []string{"/ui/datasets", "/ui/submit"} {
		p := b.get(path)
		wantStatus(t, p, http.StatusOK)
		if strings.Contains(p.body, hostile) || strings.Contains(p.body, "<img src=x") {
			t.Errorf("%s renders the name as markup", path)
		}
		wantContains(t, p, escaped)
	}
	// A form value and an error message that quote markup come back as text.
	tok := b.csrf()
	p := b.post("/ui/submit", url.Values{"csrf": {tok}, "type": {"reconstruct"}, "dataset": {d.ID}, "reconstruct.iterations": {hostile}})
	wantStatus(t, p, http.StatusBadRequest)
	if strings.Contains(p.body, hostile) {
		t.Error("the submit form echoes a value as markup")
	}
	wantContains(t, p, "iterations must be a whole number", escaped)
	// The sign-in page's next= is text too.
	p = newBrowser(t, e.url).get("/ui/login?next=" + url.QueryEscape(`/ui/jobs?"><script>alert(1)</script>`))
	if strings.Contains(p.body, "<script>alert(1)") {
		t.Error("the sign-in page renders next= as markup")
	}
}

// Another tenant's job is "not found", on its page, its image, its
// bundle and through the script's API.
func TestOtherTenantsJobNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit(e.globex, `{"type":"generate_dataset","params":{"size":16}}`)
	e.finish(j.ID, testBundle(t, testPNG(t)))
	b := newBrowser(t, e.url)
	b.mustSignIn(e.acme)
	p := b.get("/ui/jobs/" + j.ID)
	wantStatus(t, p, http.StatusNotFound)
	wantContains(t, p, "not found")
	if strings.Contains(p.body, "globex") || strings.Contains(p.body, "psnr") {
		t.Error("the not-found page shows the other tenant's job")
	}
	wantStatus(t, b.get("/ui/jobs/"+j.ID+"/image.png"), http.StatusNotFound)
	wantStatus(t, b.get("/ui/api/jobs/"+j.ID), http.StatusNotFound)
	wantStatus(t, b.get("/ui/api/jobs/"+j.ID+"/runbundle"), http.StatusNotFound)
	if strings.Contains(b.get("/ui/jobs").body, j.ID) {
		t.Error("the jobs page lists another tenant's job")
	}
}

// A finished job's page shows its params, metrics, log, image and bundle;
// the image is the RunBundle's reconstruction, the download its bytes.
func TestJobPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit(e.acme, `{"type":"generate_dataset","params":{"size":16,"severity":"mild"}}`)
	b := newBrowser(t, e.url)
	b.mustSignIn(e.acme)

	p := b.get("/ui/jobs/" + j.ID)
	wantStatus(t, p, http.StatusOK)
	wantContains(t, p, `data-state="queued"`, "badge-queued", "severity", "mild", `data-follow="/ui/api/jobs/`+j.ID+`/logs?follow=1"`, "Cancel job")

	img := testPNG(t)
	bundle := testBundle(t, img)
	e.finish(j.ID, bundle)
	p = b.get("/ui/jobs/" + j.ID)
	wantStatus(t, p, http.StatusOK)
	sum := sha256.Sum256(bundle)
	wantContains(t, p, "badge-ok", "succeeded", "psnr_db", "31.25", hex.EncodeToString(sum[:]),
		`href="/ui/api/jobs/`+j.ID+`/runbundle"`, `src="/ui/jobs/`+j.ID+`/image.png"`)
	if strings.Contains(p.body, "Cancel job") || strings.Contains(p.body, "data-follow") {
		t.Error("a finished job's page offers to cancel it or follows its log")
	}

	p = b.get("/ui/jobs/" + j.ID + "/image.png")
	wantStatus(t, p, http.StatusOK)
	if p.header.Get("Content-Type") != "image/png" || p.body != string(img) {
		t.Fatalf("image.png: %s, %d bytes; want the bundle's x_hat.png", p.header.Get("Content-Type"), len(p.body))
	}
	p = b.get("/ui/api/jobs/" + j.ID + "/runbundle")
	wantStatus(t, p, http.StatusOK)
	if got := sha256.Sum256([]byte(p.body)); got != sum {
		t.Fatal("the bundle downloaded through the UI differs")
	}

	// The jobs page lists it, and filters.
	p = b.get("/ui/jobs")
	wantContains(t, p, `data-job="`+j.ID+`"`)
	p = b.get("/ui/jobs?state=failed")
	wantStatus(t, p, http.StatusOK)
	wantContains(t, p, "No jobs match")
	p = b.get("/ui/jobs?state=bogus")
	wantStatus(t, p, http.StatusBadRequest)
	wantContains(t, p, "bogus", `role="alert"`)
}

// The submit form offers every job type with its params and the tenant's
// datasets, and makes the job it describes.
func TestSubmitForm(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.upload(e.acme, "m.npz", []byte("measurement"))
	b := newBrowser(t, e.url)
	b.mustSignIn(e.acme)
	p := b.get("/ui/submit")
	wantStatus(t, p, http.StatusOK)
	wantContains(t, p, `value="generate_dataset" checked`, `value="reconstruct"`, `name="generate_dataset.size"`,
		`placeholder="64"`, `name="reconstruct.iterations"`, `<option value="`+d.ID+`"`, `<label for="dataset">Dataset</label>`)
	// Every input has a label.
	for _, id := range regexp.MustCompile(`<(?:input|select)[^>]* id="([^"]+)"`).FindAllStringSubmatch(p.body, -1) {
		if !strings.Contains(p.body, `for="`+id[1]+`"`) {
			t.Errorf("input %s has no label", id[1])
		}
	}

	tok := b.csrf()
	form := url.Values{"csrf": {tok}, "form_id": {"f1"}, "type": {"reconstruct"}, "dataset": {d.ID}, "reconstruct.iterations": {"20"},
		"generate_dataset.size": {"99"}, "gpus": {""}, "timeout": {"30m"}}
	p = b.post("/ui/submit", form)
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/ui/jobs/job_") {
		t.Fatalf("submit: %d to %q: %s", p.status, p.location(), p.body)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(p.location(), "/ui/jobs/"), "?submitted=1")
	j, ok := e.fsm.Job(id)
	if !ok || j.Tenant != "acme" || j.Type != "reconstruct" || j.Dataset != d.ID || string(j.Params) != `{"iterations":20}` {
		t.Fatalf("job %+v (params %s)", j, j.Params)
	}
	wantContains(t, b.get(p.location()), "Job submitted.")
	// The same form sent twice (a double click) is one job.
	p = b.post("/ui/submit", form)
	if p.location() != "/ui/jobs/"+id+"?submitted=1" {
		t.Fatalf("a repeated form made another job: %q", p.location())
	}

	// A dataset job without a dataset is refused before the API.
	p = b.post("/ui/submit", url.Values{"csrf": {tok}, "type": {"reconstruct"}})
	wantStatus(t, p, http.StatusBadRequest)
	wantContains(t, p, "needs a dataset")
}

func TestNodesUsageAndAdminPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.node()
	b := newBrowser(t, e.url)
	b.mustSignIn(e.acme)
	p := b.get("/ui/nodes")
	wantStatus(t, p, http.StatusOK)
	wantContains(t, p, nodeID, "A100-80GB", "81920 MB", "42%", "55 °C", "healthy", "local", "shared")
	p = b.get("/ui/usage")
	wantStatus(t, p, http.StatusOK)
	wantContains(t, p, "2026-03", "GPU time", "Invoice for 2026-03", "Total (USD)")
	if strings.Contains(b.get("/ui/jobs").body, `href="/ui/keys"`) {
		t.Error("a tenant's nav shows the admin pages")
	}
	wantStatus(t, b.get("/ui/tenants"), http.StatusForbidden)

	if strings.Contains(p.body, "Scaler") {
		t.Error("a tenant sees the scaler")
	}
	a := newBrowser(t, e.url)
	a.mustSignIn(e.admin)
	wantContains(t, a.get("/ui/jobs"), `href="/ui/keys"`, `href="/ui/tenants"`)
	// Admins see the scaler on the nodes page: what the leader recorded.
	wantContains(t, a.get("/ui/nodes"), "Scaler", "none")
	act := e.apply(&scheduler.ScaleBegin{At: testNow, Status: scheduler.ScalerStatus{Mode: "exec", Max: 4, Desired: 1, Reason: "1 GPU job(s) wait <b>"},
		Action: scheduler.ScaleAction{Add: 1, Pool: "shared", GPUs: 1}, Grace: scheduler.Duration(time.Hour)}).(scheduler.ScaleAction)
	e.apply(&scheduler.ScaleEnd{At: testNow, ID: act.ID, Error: "hook: exit status 2: <script>"})
	p = a.get("/ui/nodes")
	wantContains(t, p, "exec", "1 desired", "0 to 4", "1 GPU job(s) wait &lt;b&gt;", "failed", "hook: exit status 2: &lt;script&gt;")
	tok := a.csrf()
	p = a.post("/ui/keys", url.Values{"csrf": {tok}, "tenant": {"initech"}, "tier": {"paid"}, "name": {"ci"}})
	wantStatus(t, p, http.StatusCreated)
	secret := regexp.MustCompile(`id="new-secret" class="mono secret" type="text" readonly value="(pwm_[0-9a-f]+)"`).FindStringSubmatch(p.body)
	if secret == nil {
		t.Fatalf("the new key's secret is not shown:\n%s", p.body)
	}
	n := newBrowser(t, e.url)
	n.mustSignIn(secret[1])
	wantContains(t, n.get("/ui/jobs"), "initech")

	p = a.post("/ui/keys", url.Values{"csrf": {tok}, "tenant": {"Bad Name"}, "tier": {"paid"}})
	wantStatus(t, p, http.StatusBadRequest)
	wantContains(t, p, "tenant must be", `value="Bad Name"`)

	p = a.post("/ui/tenants/acme", url.Values{"csrf": {tok}, "tier": {"paid"}, "pool": {"shared"}, "q.queued_jobs": {"7"}, "q.api_calls_per_day": {""}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("tenant change: %d: %s", p.status, p.body)
	}
	ten, _ := e.fsm.Tenant("acme")
	if ten.Tier != scheduler.PriorityPaid || ten.QuotaOverrides["queued_jobs"] != 7 {
		t.Fatalf("tenant %+v", ten)
	}
	wantContains(t, a.get(p.location()), "Tenant updated.", `name="q.queued_jobs" type="text" inputmode="decimal" value="7"`)

	// Revoking a key through its form.
	id := regexp.MustCompile(`<dt>ID</dt><dd class="mono">(key_[0-9a-f]+)</dd>`).FindStringSubmatch(a.post("/ui/keys", url.Values{"csrf": {tok}, "tenant": {"initech"}, "tier": {"free"}}).body)
	if id == nil {
		t.Fatal("no key ID shown")
	}
	p = a.post("/ui/keys/"+id[1]+"/delete", url.Values{"csrf": {tok}})
	if p.status != http.StatusSeeOther || p.location() != "/ui/keys?ok=revoked" {
		t.Fatalf("revoke: %d to %q", p.status, p.location())
	}
	if bytes.Contains([]byte(a.get("/ui/keys").body), []byte(id[1])) {
		t.Error("the revoked key is still listed")
	}
}

// The page's script follows a running job's log through /ui/api/: the
// stream carries each line as the job writes it and ends with the job.
func TestFollowLogThroughProxy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit(e.acme, `{"type":"generate_dataset"}`)
	e.node()
	v := e.apply(&scheduler.AssignJob{At: testNow, JobID: j.ID, Node: nodeID, Incarnation: "inc1", ExpiresAt: testNow.Add(time.Hour)})
	tok := v.(scheduler.Job).Lease.Token
	e.logs.append(j.ID, "line 1\n")
	b := newBrowser(t, e.url)
	b.mustSignIn(e.acme)
	p := b.get("/ui/jobs/" + j.ID)
	wantContains(t, p, "badge-running", "line 1", `data-follow="/ui/api/jobs/`+j.ID+`/logs?follow=1"`)

	req, _ := http.NewRequest("GET", e.url+"/ui/api/jobs/"+j.ID+"/logs?follow=1", nil)
	res, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("follow: %d", res.StatusCode)
	}
	r := bufio.NewReader(res.Body)
	readLine := func(want string) {
		t.Helper()
		got, err := r.ReadString('\n')
		if err != nil || got != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	readLine("line 1\n")
	e.logs.append(j.ID, "line 2\n")
	readLine("line 2\n")
	e.apply(&scheduler.CompleteJob{At: testNow.Add(time.Minute), JobID: j.ID, Token: tok, State: scheduler.StateFailed,
		Error: &scheduler.JobError{Code: "boom", Message: hostile}})
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("after the job ended: %q, %v", rest, err)
	}
	p = b.get("/ui/jobs/" + j.ID)
	wantContains(t, p, "badge-bad", "boom", "&lt;img src=x onerror=alert(1)&gt;")
	if strings.Contains(p.body, hostile) {
		t.Error("the job's error message renders as markup")
	}
}

// The usage page links the month's invoice as CSV: the API's own CSV
// (Accept: text/csv) for the session's tenant, as a download.
func TestInvoiceCSV(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.upload(e.acme, "m.npz", []byte("measurement"))
	b := newBrowser(t, e.url)
	b.mustSignIn(e.acme)
	p := b.get("/ui/usage?month=2026-03")
	wantStatus(t, p, http.StatusOK)
	wantContains(t, p, `id="invoice-csv"`, `href="/ui/usage/invoice.csv?month=2026-03" download`)

	p = b.get("/ui/usage/invoice.csv?month=2026-03")
	wantStatus(t, p, http.StatusOK)
	if ct, cd := p.header.Get("Content-Type"), p.header.Get("Content-Disposition"); ct != "text/csv; charset=utf-8" ||
		cd != "attachment; filename=invoice-acme-2026-03.csv" {
		t.Fatalf("Content-Type %q, Content-Disposition %q", ct, cd)
	}
	if !strings.HasPrefix(p.body, "item,quantity,free,billable,unit_price,amount\n") || !strings.Contains(p.body, "\nstorage_gb_months,") {
		t.Fatalf("the CSV:\n%s", p.body)
	}
	// The API's own CSV, byte for byte (this environment meters no API
	// calls, so that the two agree).
	api, err := client.New(e.url, e.acme).InvoiceCSV(t.Context(), "2026-03", "")
	if err != nil {
		t.Fatal(err)
	}
	if p.body != string(api) {
		t.Fatalf("the UI's CSV:\n%s\nthe API's:\n%s", p.body, api)
	}
	// No month: this month; another tenant's session: its own invoice.
	g := newBrowser(t, e.url)
	g.mustSignIn(e.globex)
	p = g.get("/ui/usage/invoice.csv")
	wantStatus(t, p, http.StatusOK)
	if cd := p.header.Get("Content-Disposition"); cd != "attachment; filename=invoice-globex-2026-03.csv" {
		t.Fatalf("Content-Disposition %q", cd)
	}
	// A month that is not one is refused as the API refuses it.
	p = b.get("/ui/usage/invoice.csv?month=March")
	wantStatus(t, p, http.StatusBadRequest)
	wantContains(t, p, `role="alert"`)
	// Without a session: sign in first, and come back to the download.
	p = newBrowser(t, e.url).get("/ui/usage/invoice.csv?month=2026-03")
	if p.status != http.StatusSeeOther || p.location() != "/ui/login?next="+url.QueryEscape("/ui/usage/invoice.csv?month=2026-03") {
		t.Fatalf("without a session: %d to %q", p.status, p.location())
	}
}
