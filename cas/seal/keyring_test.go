package seal_test

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/cas/seal"
)

// masterKey returns a MasterKey whose bytes are b, b+1, b+2, ...
func masterKey(id string, b byte) seal.MasterKey {
	m := seal.MasterKey{ID: id}
	for i := range m.Key {
		m.Key[i] = b + byte(i)
	}
	return m
}

func hexOf(m seal.MasterKey) string { return hex.EncodeToString(m.Key[:]) }

// leaksKey reports whether msg holds any 8-character window of a key-like
// field (16 or more characters) of file.
func leaksKey(msg, file string) bool {
	for _, f := range strings.Fields(file) {
		if len(f) < 16 {
			continue
		}
		for i := 0; i+8 <= len(f); i++ {
			if strings.Contains(msg, f[i:i+8]) {
				return true
			}
		}
	}
	return false
}

func TestParseKeyringFile(t *testing.T) {
	t.Parallel()
	a, b, c := masterKey("node-2025.a", 1), masterKey("B_key", 100), masterKey("c", 200)
	file := "# pwmesh master keys; first is active\n\n" +
		a.ID + " " + hexOf(a) + "\r\n" +
		"   # an indented comment\n" +
		"\t" + b.ID + "\t" + strings.ToUpper(hexOf(b)) + "  \n" +
		c.ID + "   " + hexOf(c) // no final newline
	k, err := seal.ParseKeyringFile([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Active(); got != a.ID {
		t.Errorf("Active = %q, want %q", got, a.ID)
	}
	if got, want := k.IDs(), []string{a.ID, b.ID, c.ID}; !slices.Equal(got, want) {
		t.Errorf("IDs = %q, want %q", got, want)
	}
	for _, id := range []string{a.ID, b.ID, c.ID} {
		if !k.Has(id) {
			t.Errorf("Has(%q) = false", id)
		}
	}
	if k.Has("d") || k.Has("") {
		t.Error("Has reports a key that is not there")
	}
	ids := k.IDs()
	ids[0] = "changed"
	if k.Active() != a.ID || k.IDs()[0] != a.ID {
		t.Error("IDs returned the keyring's own slice")
	}

	// The parsed keys are the ones in the file: a keyring built from a alone
	// unwraps what the parsed keyring wraps.
	w, err := k.Wrap(b.Key, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	onlyA, err := seal.NewKeyring(a)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := onlyA.Unwrap(w, nil); err != nil || got != b.Key {
		t.Fatalf("unwrap with the file's first key: %v", err)
	}
	// Upper-case hex decodes to the same key as lower-case.
	onlyB, err := seal.NewKeyring(b)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := seal.ParseKeyringFile([]byte(b.ID + " " + strings.ToUpper(hexOf(b))))
	if err != nil {
		t.Fatal(err)
	}
	wb, err := onlyB.Wrap(a.Key, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.Unwrap(wb, nil); err != nil {
		t.Fatalf("upper-case hex key: %v", err)
	}
}

func TestParseKeyringFileErrors(t *testing.T) {
	t.Parallel()
	good := masterKey("good", 1)
	goodLine := good.ID + " " + hexOf(good) + "\n"
	h := hexOf(masterKey("x", 50))
	for _, tc := range []struct {
		name, file string
		line       int // 0: the error names no line
	}{
		{"empty file", "", 0},
		{"only comments and blanks", "# nothing here\n\n   \n#x " + h + "\n", 0},
		{"bad hex", goodLine + "k2 " + h[:17] + "g" + h[18:] + "\n", 2},
		{"bad hex last digit", "k1 " + h[:63] + "z\n", 1},
		{"short key", "# c\n" + goodLine + "k2 " + h[:62] + "\n", 3},
		{"long key", "k1 " + h + "00\n", 1},
		{"duplicate ID", goodLine + "\n" + good.ID + " " + h + "\n", 3},
		{"key without ID", h + "\n", 1},
		{"three fields", "k1 " + h + " extra\n", 1},
		{"trailing comment", "k1 " + h + " # note\n", 1},
		{"bad ID character", goodLine + "k/1 " + h + "\n", 2},
		{"ID too long", strings.Repeat("i", 65) + " " + h + "\n", 1},
		{"all-zero key", goodLine + "zero " + strings.Repeat("0", 64) + "\n", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := seal.ParseKeyringFile([]byte(tc.file))
			if err == nil {
				t.Fatal("parsed")
			}
			msg := err.Error()
			if !errors.Is(err, seal.ErrFormat) {
				t.Errorf("error %q does not wrap ErrFormat", msg)
			}
			if !strings.HasPrefix(msg, "seal: ") {
				t.Errorf("error %q lacks the seal: prefix", msg)
			}
			if tc.line > 0 && !strings.Contains(msg, fmt.Sprintf("line %d:", tc.line)) {
				t.Errorf("error %q does not name line %d", msg, tc.line)
			}
			if leaksKey(msg, tc.file) {
				t.Errorf("error %q quotes key material", msg)
			}
		})
	}
}

func TestNewKeyring(t *testing.T) {
	t.Parallel()
	a := masterKey("a", 1)
	long := strings.Repeat("x", 64)
	if _, err := seal.NewKeyring(masterKey(long, 2), a); err != nil {
		t.Errorf("64-character ID refused: %v", err)
	}
	for name, ks := range map[string][]seal.MasterKey{
		"duplicate":      {a, masterKey("b", 2), masterKey("a", 3)},
		"empty ID":       {masterKey("", 2)},
		"65-char ID":     {masterKey(long+"x", 2)},
		"space in ID":    {a, masterKey("b c", 2)},
		"non-ASCII ID":   {masterKey("clé", 2)},
		"all-zero key":   {a, {ID: "zero"}},
		"active is zero": {{ID: "zero"}},
	} {
		if _, err := seal.NewKeyring(ks[0], ks[1:]...); !errors.Is(err, seal.ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
}

func TestDeriveMasterKey(t *testing.T) {
	t.Parallel()
	m1 := seal.DeriveMasterKey("derived", []byte("cluster secret"))
	m2 := seal.DeriveMasterKey("derived", []byte("cluster secret"))
	m3 := seal.DeriveMasterKey("derived", []byte("cluster secreT"))
	if m1 != m2 {
		t.Error("same secret, different keys")
	}
	if m1.Key == m3.Key {
		t.Error("different secrets, same key")
	}
	if m1.ID != "derived" {
		t.Errorf("ID = %q", m1.ID)
	}
	if m1.Key == ([32]byte{}) {
		t.Error("zero key")
	}
	if _, err := seal.NewKeyring(m1); err != nil {
		t.Error(err)
	}
}

func TestKeysDoNotPrint(t *testing.T) {
	t.Parallel()
	m := masterKey("printed", 0x41) // bytes "ABCD..." so raw key bytes are readable text
	k, err := seal.NewKeyring(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		for _, v := range []any{m, &m, k, []seal.MasterKey{m}} {
			out := fmt.Sprintf(format, v)
			if strings.Contains(out, hexOf(m)[:16]) || strings.Contains(out, string(m.Key[:8])) ||
				strings.Contains(out, fmt.Sprint(m.Key[:4])[1:8]) {
				t.Errorf("Sprintf(%q, %T) = %q prints the key", format, v, out)
			}
		}
	}
	if got := fmt.Sprint(m); !strings.Contains(got, "printed") {
		t.Errorf("Sprint(MasterKey) = %q, want the ID", got)
	}
}
