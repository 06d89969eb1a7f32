package seal_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/cas/seal"
)

func mustKeyring(t *testing.T, active seal.MasterKey, others ...seal.MasterKey) *seal.Keyring {
	t.Helper()
	k, err := seal.NewKeyring(active, others...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestWrapRoundTrip(t *testing.T) {
	t.Parallel()
	k := mustKeyring(t, masterKey("m1", 1))
	aad := []byte("tenant:acme")
	plain, w, err := k.NewDataKey(3, aad)
	if err != nil {
		t.Fatal(err)
	}
	if plain == ([32]byte{}) {
		t.Fatal("zero data key")
	}
	if w.Version != 3 || w.Master != "m1" || len(w.Sealed) != 12+32+16 {
		t.Fatalf("wrapped key = {%d %q %d bytes}", w.Version, w.Master, len(w.Sealed))
	}
	if bytes.Contains(w.Sealed, plain[:8]) {
		t.Fatal("sealed key holds the plaintext")
	}

	// Stored as JSON and read back.
	js, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"version":3`) || !strings.Contains(string(js), `"master":"m1"`) {
		t.Errorf("json = %s", js)
	}
	var back seal.WrappedKey
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	got, err := k.Unwrap(back, aad)
	if err != nil {
		t.Fatal(err)
	}
	if got != plain {
		t.Fatal("unwrapped a different key")
	}

	// Wrapping is randomised, and data keys are too.
	w2, err := k.Wrap(plain, 3, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(w.Sealed, w2.Sealed) {
		t.Error("two wraps of one key are equal")
	}
	plain2, _, err := k.NewDataKey(3, aad)
	if err != nil {
		t.Fatal(err)
	}
	if plain2 == plain {
		t.Error("two data keys are equal")
	}
}

func TestUnwrapRejects(t *testing.T) {
	t.Parallel()
	k := mustKeyring(t, masterKey("m1", 1), masterKey("m2", 2))
	aad := []byte("tenant:acme")
	_, w, err := k.NewDataKey(5, aad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		s := bytes.Clone(w.Sealed)
		s[i] ^= 0x80
		return s
	}
	for _, tc := range []struct {
		name string
		w    seal.WrappedKey
		aad  []byte
		want error
	}{
		{"wrong aad", w, []byte("tenant:other"), seal.ErrAuth},
		{"no aad", w, nil, seal.ErrAuth},
		{"swapped version", seal.WrappedKey{Version: 4, Master: w.Master, Sealed: w.Sealed}, aad, seal.ErrAuth},
		{"relabelled master", seal.WrappedKey{Version: 5, Master: "m2", Sealed: w.Sealed}, aad, seal.ErrAuth},
		{"flipped nonce", seal.WrappedKey{Version: 5, Master: "m1", Sealed: flip(0)}, aad, seal.ErrAuth},
		{"flipped ciphertext", seal.WrappedKey{Version: 5, Master: "m1", Sealed: flip(20)}, aad, seal.ErrAuth},
		{"flipped tag", seal.WrappedKey{Version: 5, Master: "m1", Sealed: flip(59)}, aad, seal.ErrAuth},
		{"short", seal.WrappedKey{Version: 5, Master: "m1", Sealed: w.Sealed[:59]}, aad, seal.ErrFormat},
		{"long", seal.WrappedKey{Version: 5, Master: "m1", Sealed: append(bytes.Clone(w.Sealed), 0)}, aad, seal.ErrFormat},
		{"empty", seal.WrappedKey{Version: 5, Master: "m1"}, aad, seal.ErrFormat},
		{"unknown master", seal.WrappedKey{Version: 5, Master: "m9", Sealed: w.Sealed}, aad, seal.ErrUnknownMaster},
		{"no master", seal.WrappedKey{Version: 5, Sealed: w.Sealed}, aad, seal.ErrUnknownMaster},
	} {
		got, err := k.Unwrap(tc.w, tc.aad)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), "seal: ") {
			t.Errorf("%s: error %q lacks the seal: prefix", tc.name, err)
		}
		if got != ([32]byte{}) {
			t.Errorf("%s: returned key bytes with an error", tc.name)
		}
		if _, err := k.Rewrap(tc.w, tc.aad); !errors.Is(err, tc.want) {
			t.Errorf("%s: Rewrap err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestMasterRotation walks the documented rotation: the old keyring wraps,
// a keyring with the new key active and the old one kept rewraps, and a
// keyring with only the new key then unwraps.
func TestMasterRotation(t *testing.T) {
	t.Parallel()
	oldM, newM := masterKey("2024", 10), masterKey("2025", 20)
	before := mustKeyring(t, oldM)
	during := mustKeyring(t, newM, oldM)
	after := mustKeyring(t, newM)

	tenants := map[string]uint32{"tenant:a": 1, "tenant:b": 7}
	plains := map[string][32]byte{}
	wrapped := map[string]seal.WrappedKey{}
	for tenant, v := range tenants {
		p, w, err := before.NewDataKey(v, []byte(tenant))
		if err != nil {
			t.Fatal(err)
		}
		plains[tenant], wrapped[tenant] = p, w
	}

	for tenant, w := range wrapped {
		aad := []byte(tenant)
		// A node with the new key file reads keys not yet rewrapped.
		if got, err := during.Unwrap(w, aad); err != nil || got != plains[tenant] {
			t.Fatalf("%s: unwrap during rotation: %v", tenant, err)
		}
		// The new key alone cannot.
		_, err := after.Unwrap(w, aad)
		if !errors.Is(err, seal.ErrUnknownMaster) || !strings.Contains(err.Error(), `"2024"`) {
			t.Fatalf("%s: unwrap old key with new keyring: %v, want ErrUnknownMaster naming 2024", tenant, err)
		}
		nw, err := during.Rewrap(w, aad)
		if err != nil {
			t.Fatal(err)
		}
		if nw.Master != "2025" || nw.Version != w.Version {
			t.Fatalf("%s: rewrapped = {%d %q}, want {%d 2025}", tenant, nw.Version, nw.Master, w.Version)
		}
		// Rewrapping an already rewrapped key is harmless.
		if _, err := during.Rewrap(nw, aad); err != nil {
			t.Fatal(err)
		}
		wrapped[tenant] = nw
	}

	for tenant, w := range wrapped {
		got, err := after.Unwrap(w, []byte(tenant))
		if err != nil || got != plains[tenant] {
			t.Fatalf("%s: unwrap after rotation: %v", tenant, err)
		}
		// A rewrapped key cannot be moved to the other tenant either.
		for other := range tenants {
			if other != tenant {
				if _, err := after.Unwrap(w, []byte(other)); !errors.Is(err, seal.ErrAuth) {
					t.Errorf("%s key unwrapped as %s: %v", tenant, other, err)
				}
			}
		}
	}
}
