//go:build cgo && linux

package nvml

import (
	"context"
	"errors"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/pwmesh/pwmesh/gpu"
)

// fakeLib is a fake driver: two devices, and a failure switch per call.
type fakeLib struct {
	gonvml.Interface // unset methods panic: the inventory must not call them
	fail             map[string]bool
}

func (f *fakeLib) ret(call string) gonvml.Return {
	if f.fail[call] {
		return gonvml.ERROR_UNKNOWN
	}
	return gonvml.SUCCESS
}
func (f *fakeLib) Init() gonvml.Return                  { return f.ret("init") }
func (f *fakeLib) Shutdown() gonvml.Return              { return f.ret("shutdown") }
func (f *fakeLib) ErrorString(r gonvml.Return) string   { return "fake error" }
func (f *fakeLib) DeviceGetCount() (int, gonvml.Return) { return 2, f.ret("count") }
func (f *fakeLib) DeviceGetHandleByIndex(i int) (gonvml.Device, gonvml.Return) {
	return &fakeDevice{lib: f, i: i}, f.ret("handle")
}

type fakeDevice struct {
	gonvml.Device
	lib *fakeLib
	i   int
}

func (d *fakeDevice) GetName() (string, gonvml.Return) {
	return "NVIDIA H100 80GB HBM3", d.lib.ret("name")
}
func (d *fakeDevice) GetUUID() (string, gonvml.Return) {
	return []string{"GPU-aaa", "GPU-bbb"}[d.i], d.lib.ret("uuid")
}
func (d *fakeDevice) GetMemoryInfo() (gonvml.Memory, gonvml.Return) {
	return gonvml.Memory{Total: 80 << 30, Used: 1 << 30}, d.lib.ret("memory")
}
func (d *fakeDevice) GetUtilizationRates() (gonvml.Utilization, gonvml.Return) {
	return gonvml.Utilization{Gpu: 42}, d.lib.ret("util")
}

func TestInventoryFromFakeDriver(t *testing.T) {
	t.Parallel()
	inv, err := open(&fakeLib{})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := inv.Devices(context.Background())
	if err != nil || len(devs) != 2 {
		t.Fatalf("devices %+v, %v", devs, err)
	}
	d := devs[1]
	if d.Index != 1 || d.UUID != "GPU-bbb" || d.Model != "NVIDIA H100 80GB HBM3" || d.MemoryMB != 80<<10 || d.MemoryUsedMB != 1<<10 || d.Utilization != 42 || !d.Healthy {
		t.Fatalf("device %+v", d)
	}
}

func TestInventoryFailures(t *testing.T) {
	t.Parallel()
	if _, err := open(&fakeLib{fail: map[string]bool{"init": true}}); !errors.Is(err, gpu.ErrUnavailable) {
		t.Fatalf("init failure: %v, want ErrUnavailable", err)
	}
	for _, call := range []string{"count", "handle", "name", "uuid"} {
		inv, _ := open(&fakeLib{fail: map[string]bool{call: true}})
		if _, err := inv.Devices(context.Background()); err == nil {
			t.Errorf("%s failure not reported", call)
		}
	}
	inv, _ := open(&fakeLib{fail: map[string]bool{"memory": true}})
	devs, err := inv.Devices(context.Background())
	if err != nil || devs[0].Healthy {
		t.Fatalf("a device whose memory cannot be read must be unhealthy: %+v %v", devs, err)
	}
}

// Without a driver (as on CI), Open says so and does not crash.
func TestOpenWithoutDriver(t *testing.T) {
	t.Parallel()
	inv, err := Open()
	if err != nil {
		if !errors.Is(err, gpu.ErrUnavailable) {
			t.Fatalf("open: %v, want ErrUnavailable", err)
		}
		return
	}
	devs, err := inv.Devices(context.Background())
	t.Logf("NVML present: %d device(s), %v", len(devs), err)
	_ = inv.Close()
}
