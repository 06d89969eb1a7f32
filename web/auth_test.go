package web_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web"
)

func TestAuthRequired(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, route := range []struct{ method, path string }{
		{"GET", "/jobs"}, {"POST", "/jobs"}, {"GET", "/jobs/job_x"}, {"POST", "/jobs/job_x/cancel"},
		{"GET", "/jobs/job_x/logs"}, {"GET", "/jobs/job_x/runbundle"}, {"POST", "/datasets"},
		{"GET", "/datasets"}, {"GET", "/datasets/ds_x"}, {"DELETE", "/datasets/ds_x"},
		{"GET", "/nodes"}, {"GET", "/usage"}, {"POST", "/keys"},
	} {
		for name, hdr := range map[string]string{
			"missing":   "",
			"unknown":   "Bearer pwm_00000000000000000000000000000000",
			"malformed": "Basic dXNlcjpwYXNz",
			"empty":     "Bearer ",
			"no scheme": e.acme,
		} {
			var r resp
			e.unchanged(func() {
				if hdr == "" {
					r = e.do(route.method, route.path, "", nil)
				} else {
					r = e.do(route.method, route.path, "", nil, "Authorization", hdr)
				}
			})
			if r.status != http.StatusUnauthorized {
				t.Fatalf("%s %s with %s key: status %d, want 401", route.method, route.path, name, r.status)
			}
			wantError(t, r, http.StatusUnauthorized, "unauthorized")
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
		}
	}
	// The scheme is case-insensitive.
	wantStatus(t, e.do("GET", "/jobs", "", nil, "Authorization", "bearer "+e.acme), http.StatusOK)
	// Health and metrics are public.
	wantStatus(t, e.do("GET", "/health", "", nil), http.StatusOK)
	wantStatus(t, e.do("GET", "/metrics", "", nil), http.StatusOK)
}

// Another tenant's objects answer exactly like missing ones.
func TestForeignTenantIsNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ds := e.upload(e.acme, "scan.npz", []byte("acme data"))
	queued := e.submit(e.acme, map[string]any{"type": "calibrate", "dataset": ds.ID})
	done := e.submit(e.acme, map[string]any{"type": "generate_dataset"})
	e.finishJob(done.ID, testNow, testNow.Add(time.Minute), nil, []byte("bundle"))
	e.logs.append(queued.ID, "secret log\n")

	for _, c := range []struct{ method, path string }{
		{"GET", "/jobs/" + queued.ID},
		{"POST", "/jobs/" + queued.ID + "/cancel"},
		{"GET", "/jobs/" + queued.ID + "/logs"},
		{"GET", "/jobs/" + queued.ID + "/logs?follow=1"},
		{"GET", "/jobs/" + done.ID + "/runbundle"},
		{"GET", "/datasets/" + ds.ID},
		{"DELETE", "/datasets/" + ds.ID},
	} {
		var foreign, missing resp
		e.unchanged(func() {
			foreign = e.do(c.method, c.path, e.globex, nil)
			missing = e.do(c.method, regexp.MustCompile(`(job|ds)_[0-9a-f]+`).ReplaceAllString(c.path, "${1}_nope"), e.globex, nil)
		})
		wantError(t, foreign, http.StatusNotFound, "not_found")
		wantError(t, missing, http.StatusNotFound, "not_found")
		norm := regexp.MustCompile(`(job|ds)_[0-9a-z]+`)
		if fm, mm := norm.ReplaceAllString(errMessage(t, foreign), "${1}_X"), norm.ReplaceAllString(errMessage(t, missing), "${1}_X"); fm != mm {
			t.Errorf("%s %s: foreign answers %q, missing %q", c.method, c.path, fm, mm)
		}
	}
	// Lists show only the caller's own objects.
	var jl struct{ Jobs []any }
	e.do("GET", "/jobs", e.globex, nil).decode(t, &jl)
	var dl struct{ Datasets []any }
	e.do("GET", "/datasets", e.globex, nil).decode(t, &dl)
	if len(jl.Jobs) != 0 || len(dl.Datasets) != 0 {
		t.Fatalf("globex sees %d jobs and %d datasets of acme", len(jl.Jobs), len(dl.Datasets))
	}
	// Submitting against another tenant's dataset is not found either.
	e.unchanged(func() {
		wantError(t, e.doJSON("POST", "/jobs", e.globex, map[string]any{"type": "calibrate", "dataset": ds.ID}),
			http.StatusNotFound, "dataset_not_found")
	})
}

func errMessage(t testing.TB, r resp) string {
	var b struct{ Error struct{ Message string } }
	r.decode(t, &b)
	return b.Error.Message
}

func TestHashKeyAndSecret(t *testing.T) {
	t.Parallel()
	if got := web.HashKey("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("HashKey = %s", got)
	}
	a, b := web.NewKeySecret(), web.NewKeySecret()
	if !regexp.MustCompile(`^pwm_[0-9a-f]{32}$`).MatchString(a) || a == b {
		t.Fatalf("secrets %q %q", a, b)
	}
}

// A node still loading its state answers 503, not 401, for a key it does
// not know yet; known keys work as usual.
func TestUnknownKeyWhileStartingIs503(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cluster.set(web.Health{Node: "n1", Ready: false})
	wantError(t, e.do("GET", "/jobs", "pwm_not_a_key", nil), http.StatusServiceUnavailable, "no_leader")
	wantStatus(t, e.do("GET", "/jobs", e.acme, nil), http.StatusOK)
	e.cluster.set(web.Health{Node: "n1", Leader: "n1", Ready: true})
	wantError(t, e.do("GET", "/jobs", "pwm_not_a_key", nil), http.StatusUnauthorized, "unauthorized")
}

// On a follower, a key created a moment ago through another node is
// waited for, not refused.
func TestFollowerWaitsForANewKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cluster.set(web.Health{Node: "n2", Leader: "n1", Role: "follower", Ready: true})
	secret := web.NewKeySecret()
	done := make(chan resp, 1)
	go func() { done <- e.do("GET", "/jobs", secret, nil) }()
	if _, err := e.raft.Apply(context.Background(), &scheduler.CreateKey{At: time.Now(), Key: scheduler.APIKey{
		Hash: web.HashKey(secret), Prefix: secret[:8], Tenant: "late", Tier: "free"}}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, <-done, http.StatusOK)
}
