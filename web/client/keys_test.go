package client_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/web/client"
)

func TestKeys(t *testing.T) {
	t.Parallel()
	exp := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	c := newServer(t, map[string]http.HandlerFunc{
		"POST /keys": func(w http.ResponseWriter, r *http.Request) {
			var req client.KeyRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req != (client.KeyRequest{Tenant: "acme", Tier: "free", Name: "ci", ExpiresIn: "720h"}) {
				writeError(w, 400, "bad_request", "bad body")
				return
			}
			writeJSON(w, http.StatusCreated, client.Key{ID: "key_1", Key: "pwm_s", Tenant: "acme", Tier: "free", Name: "ci", ExpiresAt: &exp})
		},
		"GET /keys": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"keys": []client.KeyInfo{{ID: "key_1", Tenant: "acme", Tier: "free", Name: "ci", ExpiresAt: &exp}}})
		},
		"DELETE /keys/{id}": func(w http.ResponseWriter, r *http.Request) {
			if r.PathValue("id") != "key_1" {
				writeError(w, http.StatusNotFound, "not_found", "no such key")
				return
			}
			w.WriteHeader(http.StatusNoContent)
		},
	})
	k, err := c.CreateKeyWith(t.Context(), client.KeyRequest{Tenant: "acme", Tier: "free", Name: "ci", ExpiresIn: "720h"})
	if err != nil || k.ID != "key_1" || k.Key != "pwm_s" || k.ExpiresAt == nil || !k.ExpiresAt.Equal(exp) {
		t.Fatalf("CreateKeyWith = %+v, %v", k, err)
	}
	keys, err := c.ListKeys(t.Context())
	if err != nil || len(keys) != 1 || keys[0].ID != "key_1" || keys[0].LastUsedAt != nil || keys[0].Name != "ci" {
		t.Fatalf("ListKeys = %+v, %v", keys, err)
	}
	if err := c.RevokeKey(t.Context(), "key_1"); err != nil {
		t.Fatal(err)
	}
	var ae *client.APIError
	if err := c.RevokeKey(t.Context(), "key/2"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Fatalf("RevokeKey of a missing key: %v", err)
	}
}
