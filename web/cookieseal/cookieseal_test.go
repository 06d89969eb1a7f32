package cookieseal_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/web/cookieseal"
)

type value struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{7}, 32)
	s, err := cookieseal.New(key, "session v1", 200)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.Seal(value{Name: "ann", N: 3})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "ann") {
		t.Fatal("the sealed value shows its content")
	}
	var got value
	if err := s.Open(sealed, &got); err != nil || got != (value{Name: "ann", N: 3}) {
		t.Fatalf("open: %+v %v", got, err)
	}
	// Another node with the same key opens it; another key or purpose,
	// a changed byte, garbage and an oversized value do not.
	same, _ := cookieseal.New(key, "session v1", 200)
	if err := same.Open(sealed, &got); err != nil {
		t.Fatalf("same key: %v", err)
	}
	otherKey, _ := cookieseal.New(bytes.Repeat([]byte{8}, 32), "session v1", 200)
	otherPurpose, _ := cookieseal.New(key, "oidc state v1", 200)
	for name, c := range map[string]struct {
		s     *cookieseal.Sealer
		value string
		want  error
	}{
		"another key":     {otherKey, sealed, cookieseal.ErrNotOpen},
		"another purpose": {otherPurpose, sealed, cookieseal.ErrNotOpen},
		"a changed byte":  {s, sealed[:10] + string(sealed[10]^1) + sealed[11:], nil},
		"garbage":         {s, "%%%", cookieseal.ErrMalformed},
		"too short":       {s, "AAAA", cookieseal.ErrMalformed},
		"too long":        {s, strings.Repeat("A", 201), cookieseal.ErrTooLarge},
	} {
		err := c.s.Open(c.value, &got)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if _, err := s.Seal(value{Name: strings.Repeat("x", 300)}); !errors.Is(err, cookieseal.ErrTooLarge) {
		t.Fatalf("oversized seal: %v", err)
	}
	if _, err := cookieseal.New(key[:16], "x", 10); err == nil {
		t.Fatal("a 16-byte key was taken")
	}
}
