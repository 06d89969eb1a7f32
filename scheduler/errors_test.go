package scheduler

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"strings"
	"testing"
)

// Every exported Err* variable of this package is in ErrorKinds (found by
// reading the source, so a new sentinel without a kind fails here), and
// each survives KindOf then ErrorOfKind with errors.Is intact.
func TestErrorKindsCoverEverySentinel(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, d := range f.Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok || g.Tok != token.VAR {
					continue
				}
				for _, sp := range g.Specs {
					vs := sp.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if !strings.HasPrefix(n.Name, "Err") || !n.IsExported() || i >= len(vs.Values) {
							continue
						}
						// A sentinel is an errors.New or fmt.Errorf value.
						if call, ok := vs.Values[i].(*ast.CallExpr); ok {
							if sel, ok := call.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "New" || sel.Sel.Name == "Errorf") {
								names = append(names, n.Name)
							}
						}
					}
				}
			}
		}
	}
	sentinels := map[string]error{
		"ErrNotFound": ErrNotFound, "ErrConflict": ErrConflict, "ErrInvalid": ErrInvalid, "ErrStaleToken": ErrStaleToken,
		"ErrUnknownCmd": ErrUnknownCmd, "ErrNotLeader": ErrNotLeader, "ErrNoLeader": ErrNoLeader, "ErrPayloadBytes": ErrPayloadBytes,
		"ErrNotDurable": ErrNotDurable, "ErrIdempotencyMismatch": ErrIdempotencyMismatch, "ErrForbidden": ErrForbidden,
		"ErrQuota": ErrQuota,
	}
	if len(names) != len(sentinels) {
		t.Errorf("the package declares %d sentinels %v; this test knows %d: add the new one here and to ErrorKinds", len(names), names, len(sentinels))
	}
	for _, name := range names {
		s, ok := sentinels[name]
		if !ok {
			t.Errorf("sentinel %s is not known to this test", name)
			continue
		}
		wrapped := fmt.Errorf("scheduler: something: %w", s)
		kind := KindOf(wrapped)
		if kind == KindInternal {
			t.Errorf("%s has no kind in ErrorKinds", name)
			continue
		}
		back := ErrorOfKind(kind, wrapped.Error())
		if !errors.Is(back, s) || back.Error() != wrapped.Error() {
			t.Errorf("%s: a hop gives %v (is %v)", name, back, errors.Is(back, s))
		}
		for other, o := range sentinels {
			if other != name && errors.Is(back, o) {
				t.Errorf("%s comes back as %s too", name, other)
			}
		}
	}
	if KindOf(errors.New("disk on fire")) != KindInternal {
		t.Error("an unknown error has a kind")
	}
	if err := ErrorOfKind("no_such_kind", "m"); err.Error() != "m" || errors.Unwrap(err) != nil {
		t.Errorf("unknown kind: %v", err)
	}
	kinds := map[string]bool{}
	for _, k := range ErrorKinds {
		if kinds[k.Kind] {
			t.Errorf("kind %q twice", k.Kind)
		}
		kinds[k.Kind] = true
	}
}
