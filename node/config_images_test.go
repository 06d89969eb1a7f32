package node

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestConfigImagesAndOutputs: allowed_images and max_output_bytes come from
// the config file; a malformed pattern and a negative limit are refused.
func TestConfigImagesAndOutputs(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "pwmesh.json")
	if err := os.WriteFile(file, []byte(`{"allowed_images":["registry.example/org/*","tools/x:1"],"max_output_bytes":1048576}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	c.Dev = true
	if err := c.LoadFile(file); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.AllowedImages, []string{"registry.example/org/*", "tools/x:1"}) || c.MaxOutputBytes != 1<<20 {
		t.Fatalf("from the file: allowed %q, max output %d", c.AllowedImages, c.MaxOutputBytes)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Config){
		"bad pattern":   func(c *Config) { c.AllowedImages = []string{"reg/[org"} },
		"empty pattern": func(c *Config) { c.AllowedImages = []string{" "} },
		"negative":      func(c *Config) { c.MaxOutputBytes = -1 },
	} {
		c := Defaults()
		c.Dev = true
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
