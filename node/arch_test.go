package node

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/pwmesh/pwmesh/"

type goPackage struct {
	ImportPath string
	Doc        string
	Deps       []string
	Name       string
}

func listPackages(t *testing.T) []goPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestDependenciesPointInward keeps STYLE.md's arrows: cmd → node →
// {web, scheduler, mesh, cas, gpu}; scheduler, cas and gpu import none of
// node, web or mesh, nor each other; web imports no node package.
func TestDependenciesPointInward(t *testing.T) {
	t.Parallel()
	forbidden := map[string][]string{
		"scheduler": {"node", "web", "mesh", "cas", "gpu"},
		"cas":       {"node", "web", "mesh", "scheduler", "gpu"},
		"gpu":       {"node", "web", "mesh", "scheduler", "cas"},
		"web":       {"node", "mesh", "gpu", "cmd"},
		"node":      {"cmd"},
	}
	for _, p := range listPackages(t) {
		top := strings.SplitN(strings.TrimPrefix(p.ImportPath, module), "/", 2)[0]
		for _, d := range p.Deps {
			if !strings.HasPrefix(d, module) {
				continue
			}
			dtop := strings.SplitN(strings.TrimPrefix(d, module), "/", 2)[0]
			for _, f := range forbidden[top] {
				// A package may use its own test helpers (e.g. scheduler/schedulertest).
				if dtop == f && dtop != top {
					t.Errorf("%s imports %s: dependencies must point inward (see STYLE.md)", p.ImportPath, d)
				}
			}
		}
	}
}

// TestEveryPackageHasADocComment: each package says what it owns.
func TestEveryPackageHasADocComment(t *testing.T) {
	t.Parallel()
	for _, p := range listPackages(t) {
		if p.Name == "main" {
			continue
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}
