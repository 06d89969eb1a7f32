package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestKeyListAndRm(t *testing.T) {
	t.Parallel()
	var revoked []string
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"GET /keys": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]any{
				{"id": "key_a", "tenant": "admin", "tier": "paid", "admin": true, "name": "", "created_at": "2026-03-01T10:00:00Z",
					"last_used_at": "2026-03-02T11:00:00Z", "expires_at": nil},
				{"id": "key_b", "tenant": "acme", "tier": "free", "admin": false, "name": "ci", "created_at": "2026-03-01T12:00:00Z",
					"last_used_at": nil, "expires_at": "2026-04-01T12:00:00Z"},
			}})
		},
		"DELETE /keys/{id}": func(w http.ResponseWriter, r *http.Request) {
			if r.PathValue("id") != "key_b" {
				apiError(w, http.StatusNotFound, "not_found", "key "+r.PathValue("id")+" not found")
				return
			}
			revoked = append(revoked, r.PathValue("id"))
			w.WriteHeader(http.StatusNoContent)
		},
	})
	r := cli(t, addr, nil, "key", "list")
	r.wantCode(t, 0)
	want := []string{
		"ID TENANT TIER ADMIN NAME CREATED LAST USED EXPIRES",
		"key_a admin paid yes - 2026-03-01T10:00:00Z 2026-03-02T11:00:00Z -",
		"key_b acme free - ci 2026-03-01T12:00:00Z - 2026-04-01T12:00:00Z",
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("key list:\n%s", r.stdout)
	}
	for i, l := range lines {
		if got := strings.Join(strings.Fields(l), " "); got != want[i] {
			t.Errorf("line %d = %q, want %q", i, got, want[i])
		}
	}
	r = cli(t, addr, nil, "key", "list", "--json")
	r.wantCode(t, 0)
	var keys []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 2 || keys[1]["name"] != "ci" || keys[1]["last_used_at"] != nil {
		t.Errorf("--json = %q: %v", r.stdout, err)
	}

	r = cli(t, addr, nil, "key", "rm", "key_b")
	r.wantCode(t, 0)
	if r.stdout != "revoked key key_b\n" || len(revoked) != 1 {
		t.Errorf("rm: stdout %q, revoked %v", r.stdout, revoked)
	}
	r = cli(t, addr, nil, "key", "rm", "key_x")
	r.wantCode(t, 1)
	if !strings.Contains(r.stderr, "404 not_found") {
		t.Errorf("rm of a missing key: %q", r.stderr)
	}
	cli(t, addr, nil, "key", "rm").wantCode(t, 2)
}

func TestKeyCreateNameAndExpiry(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, map[string]http.HandlerFunc{
		"POST /keys": func(w http.ResponseWriter, r *http.Request) {
			var body map[string]string
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body["name"] != "ci" || body["expires_in"] != "720h" {
				apiError(w, 400, "bad_request", "bad body")
				return
			}
			writeJSON(w, http.StatusCreated, map[string]any{"id": "key_c", "key": "pwm_s3cret", "tenant": "acme", "tier": "free",
				"name": "ci", "expires_at": "2026-04-14T12:00:00Z"})
		},
	})
	r := cli(t, addr, nil, "key", "create", "--tenant", "acme", "--tier", "free", "--name", "ci", "--expires-in", "720h")
	r.wantCode(t, 0)
	if r.stdout != "pwm_s3cret\n" || !strings.Contains(r.stderr, "key_c") || !strings.Contains(r.stderr, "valid until 2026-04-14T12:00:00Z") {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
	cli(t, addr, nil, "key", "create", "--tenant", "acme", "--tier", "free", "--expires-in", "soon").wantCode(t, 2)
}
