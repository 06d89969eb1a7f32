package scheduler

import (
	"bytes"
	"io"
	"testing"
	"time"
)

func TestApplyKeyIDsNamesAndExpiry(t *testing.T) {
	t.Parallel()
	exp := t0.Add(30 * 24 * time.Hour)
	runApplyCases(t, []applyCase{
		{name: "stores id, name and expiry", prep: func(h *harness) Command {
			c := keyCmd("h1", "acme", PriorityFree)
			c.Key.ID, c.Key.Name, c.Key.ExpiresAt = "key_ci", "ci", &exp
			return c
		}, check: func(t *testing.T, h *harness, v any) {
			k, ok := h.f.KeyByID("key_ci")
			if !ok || k.Hash != "h1" || k.Name != "ci" || k.ExpiresAt == nil || !k.ExpiresAt.Equal(exp) || v.(APIKey).ID != "key_ci" {
				t.Fatalf("key = %+v, %v; returned %+v", k, ok, v)
			}
			if k.Expired(exp.Add(-time.Second)) || !k.Expired(exp) {
				t.Fatal("Expired is wrong around the expiry")
			}
		}},
		{name: "a key without id gets one from its hash", prep: func(h *harness) Command {
			return keyCmd("0123456789abcdef0123", "acme", PriorityFree)
		}, check: func(t *testing.T, h *harness, v any) {
			if k, ok := h.f.KeyByID("key_0123456789abcdef"); !ok || k.Hash != "0123456789abcdef0123" {
				t.Fatalf("derived id: %+v, %v", k, ok)
			}
		}},
		{name: "duplicate id refused", prep: func(h *harness) Command {
			c := keyCmd("h1", "acme", PriorityFree)
			c.Key.ID = "key_x"
			h.must(c)
			c2 := keyCmd("h2", "acme", PriorityFree)
			c2.Key.ID = "key_x"
			return c2
		}, err: ErrConflict},
		{name: "reserved tenant refused for an ordinary key", prep: func(h *harness) Command {
			return keyCmd("h1", "admin", PriorityFree)
		}, err: ErrInvalid},
		{name: "reserved tenant refused whatever the case", prep: func(h *harness) Command {
			return keyCmd("h1", "System", PriorityPaid)
		}, err: ErrInvalid},
		{name: "an admin key may use a reserved tenant", prep: func(h *harness) Command {
			c := keyCmd("h1", "admin", PriorityPaid)
			c.Key.Admin = true
			return c
		}},
	})
	for _, name := range []string{"admin", "system", "pwmesh", "root", "internal", "bootstrap"} {
		if !ReservedTenant(name) {
			t.Errorf("ReservedTenant(%q) = false", name)
		}
	}
	if ReservedTenant("acme") {
		t.Error("ReservedTenant(acme) = true")
	}
}

func adminKeyCmd(hash, id string) *CreateKey {
	c := keyCmd(hash, "admin", PriorityPaid)
	c.Key.ID, c.Key.Admin = id, true
	return c
}

func TestApplyRevokeKey(t *testing.T) {
	t.Parallel()
	prep := func(h *harness) {
		h.must(adminKeyCmd("h-admin", "key_admin"))
		c := keyCmd("h1", "acme", PriorityFree)
		c.Key.ID = "key_1"
		h.must(c)
	}
	runApplyCases(t, []applyCase{
		{name: "admin revokes any", prep: func(h *harness) Command {
			prep(h)
			return &RevokeKey{At: t0, ID: "key_1"}
		}, check: func(t *testing.T, h *harness, v any) {
			if _, ok := h.f.Key("h1"); ok {
				t.Fatal("revoked key still authenticates")
			}
			if _, ok := h.f.KeyByID("key_1"); ok {
				t.Fatal("revoked key still listed")
			}
			if v.(APIKey).ID != "key_1" {
				t.Fatalf("returned %+v", v)
			}
		}},
		{name: "tenant revokes its own", prep: func(h *harness) Command {
			prep(h)
			return &RevokeKey{At: t0, ID: "key_1", Tenant: "acme"}
		}},
		{name: "another tenant's key is not found", prep: func(h *harness) Command {
			prep(h)
			return &RevokeKey{At: t0, ID: "key_1", Tenant: "other"}
		}, err: ErrNotFound},
		{name: "unknown key", prep: func(h *harness) Command {
			prep(h)
			return &RevokeKey{At: t0, ID: "key_nope"}
		}, err: ErrNotFound},
		{name: "the last admin key stays", prep: func(h *harness) Command {
			prep(h)
			return &RevokeKey{At: t0, ID: "key_admin"}
		}, err: ErrConflict},
		{name: "an admin key goes when another is left", prep: func(h *harness) Command {
			prep(h)
			h.must(adminKeyCmd("h-admin2", "key_admin2"))
			return &RevokeKey{At: t0, ID: "key_admin"}
		}},
	})
}

func TestApplyTouchKeysOnlyMovesForward(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := keyCmd("h1", "acme", PriorityFree)
	c.Key.ID = "key_1"
	h.must(c)
	later, earlier := t0.Add(time.Hour), t0.Add(time.Minute)
	touch := &TouchKeys{At: later, Used: map[string]time.Time{"key_1": later, "key_gone": later}}
	if v := h.must(touch); v.(int) != 1 {
		t.Fatalf("touched %v keys, want 1", v)
	}
	if v := h.must(touch); v.(int) != 0 {
		t.Fatalf("a repeated touch moved %v keys", v)
	}
	h.must(&TouchKeys{At: later, Used: map[string]time.Time{"key_1": earlier}})
	if k, _ := h.f.KeyByID("key_1"); !k.LastUsedAt.Equal(later) {
		t.Fatalf("LastUsedAt = %v, want %v", k.LastUsedAt, later)
	}
}

func TestKeysListing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for i, spec := range []struct{ hash, id, tenant string }{
		{"h3", "key_c", "acme"}, {"h1", "key_a", "acme"}, {"h2", "key_b", "other"},
	} {
		c := keyCmd(spec.hash, spec.tenant, PriorityFree)
		c.Key.ID = spec.id
		c.At = t0.Add(time.Duration(i%2) * time.Minute) // key_c and key_b at t0, key_a later
		h.must(c)
	}
	ids := func(ks []APIKey) (out []string) {
		for _, k := range ks {
			out = append(out, k.ID)
		}
		return out
	}
	if got := ids(h.f.Keys("")); len(got) != 3 || got[0] != "key_b" || got[1] != "key_c" || got[2] != "key_a" {
		t.Fatalf("all keys = %v", got)
	}
	if got := ids(h.f.Keys("acme")); len(got) != 2 || got[0] != "key_c" || got[1] != "key_a" {
		t.Fatalf("acme keys = %v", got)
	}
}

func TestIdempotencyKeyWithAnotherRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base()
	c := submitCmd("j1", "acme", PriorityPaid, "ds1", 0)
	c.IdempotencyKey, c.RequestHash = "k1", "hash-a"
	h.must(c)
	same := submitCmd("j2", "acme", PriorityPaid, "ds1", 0)
	same.IdempotencyKey, same.RequestHash = "k1", "hash-a"
	if v := h.must(same); v.(Job).ID != "j1" {
		t.Fatalf("same request returned %s, want j1", v.(Job).ID)
	}
	other := submitCmd("j3", "acme", PriorityPaid, "ds1", 0)
	other.IdempotencyKey, other.RequestHash = "k1", "hash-b"
	_, err := h.apply(other)
	wantErr(t, err, ErrIdempotencyMismatch)
	if _, ok := h.f.Job("j3"); ok {
		t.Fatal("a mismatched submission created a job")
	}
	// The record and its hash survive a snapshot.
	f := NewFSM()
	if err := f.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, h.f)))); err != nil {
		t.Fatal(err)
	}
	h2 := &harness{tb: t, f: f, idx: h.idx}
	_, err = h2.apply(other)
	wantErr(t, err, ErrIdempotencyMismatch)
}

// Keys stored before IDs existed (a snapshot record without one) get the
// derived ID on restore, on every replica alike.
func TestRestoreDerivesKeyIDs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	exp := t0.Add(time.Hour)
	c := keyCmd("0123456789abcdef0123", "acme", PriorityFree)
	c.Key.Name, c.Key.ExpiresAt = "ci", &exp
	h.must(c)
	h.must(&TouchKeys{At: t0, Used: map[string]time.Time{"key_0123456789abcdef": exp}})
	f := NewFSM()
	if err := f.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, h.f)))); err != nil {
		t.Fatal(err)
	}
	k, ok := f.KeyByID("key_0123456789abcdef")
	if !ok || k.Name != "ci" || !k.ExpiresAt.Equal(exp) || !k.LastUsedAt.Equal(exp) {
		t.Fatalf("restored key = %+v, %v", k, ok)
	}
	legacy := []byte(`{"hash":"fedcba9876543210fedc","tenant":"old","tier":"free","created_at":"2025-03-01T12:00:00Z"}`)
	var stream bytes.Buffer
	stream.Write([]byte{recKey, 0, 0, 0, byte(len(legacy))})
	stream.Write(legacy)
	g := NewFSM()
	if err := g.Restore(io.NopCloser(&stream)); err != nil {
		t.Fatal(err)
	}
	if k, ok := g.KeyByID("key_fedcba9876543210"); !ok || k.Tenant != "old" {
		t.Fatalf("legacy key = %+v, %v", k, ok)
	}
}
