package node_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/nodetest"
)

// TestKeyRotationThroughTheAPI rotates a tenant's data key, then the
// master key the way docs/storage.md says (new key added first, nodes
// restarted, data keys rewrapped, old key removed, restarted again):
// every dataset stays readable, and new ones use the new data key.
func TestKeyRotationThroughTheAPI(t *testing.T) {
	t.Parallel()
	c := nodetest.Start(t, nodetest.Spec{Voter: true})
	n := c.WaitForLeader(30 * time.Second)
	c.WaitReady(n, 30*time.Second)
	ctx := context.Background()
	d1, p1 := upload(t, n, "before.bin", 70_000)
	r, err := n.Client.RotateTenantKey(ctx, d1.Tenant)
	if err != nil || r.KeyVersion != 2 {
		t.Fatalf("rotate: %+v %v", r, err)
	}
	d2, p2 := upload(t, n, "after.bin", 5_000)
	if d1.KeyVersion != 1 || d2.KeyVersion != 2 {
		t.Fatalf("key versions %d, %d", d1.KeyVersion, d2.KeyVersion)
	}
	old := c.MasterKeys()
	fresh := nodetest.NewMasterKey("m2")
	c.SetMasterKeys(fresh + old) // the new key first: active
	c.Stop(n)
	c.Restart(n)
	rw, err := n.Client.RewrapKeys(ctx)
	if err != nil || rw.Master != "m2" || rw.Tenants < 1 {
		t.Fatalf("rewrap: %+v %v", rw, err)
	}
	c.SetMasterKeys(fresh) // the old key is gone
	c.Stop(n)
	c.Restart(n)
	for _, x := range []struct {
		id   string
		want []byte
	}{{d1.ID, p1}, {d2.ID, p2}} {
		if got := download(n, "/datasets/"+x.id+"/download"); !bytes.Equal(got, x.want) {
			t.Fatalf("dataset %s after the master rotation: %d bytes", x.id, len(got))
		}
	}
}
