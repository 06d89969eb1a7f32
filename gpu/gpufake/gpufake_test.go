package gpufake

import (
	"context"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	inv, err := Parse("2xA100-80GB, 1xT4-16GB", "n1")
	if err != nil {
		t.Fatal(err)
	}
	devs, _ := inv.Devices(context.Background())
	if len(devs) != 3 {
		t.Fatalf("got %d devices, want 3", len(devs))
	}
	if devs[0].Model != "A100-80GB" || devs[0].MemoryMB != 80*1024 || devs[2].Model != "T4-16GB" || devs[2].Index != 2 {
		t.Fatalf("unexpected devices %+v", devs)
	}
	if devs[0].UUID == devs[1].UUID {
		t.Fatal("UUIDs must be unique")
	}
	for _, bad := range []string{"", "A100", "0xA100-80GB", "2xA100", "2x-80GB", "2xA100-80GB,", "2xA100-0GB", "99xA100-1GB"} {
		if _, err := Parse(bad, "n"); err == nil {
			t.Errorf("Parse(%q) succeeded, want error", bad)
		}
	}
}
