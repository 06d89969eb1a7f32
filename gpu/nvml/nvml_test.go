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
	ecc              uint64                // uncorrected ECC errors of device 0
	events           chan gonvml.EventData // what the event set's Wait yields
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
func (d *fakeDevice) GetTemperature(gonvml.TemperatureSensors) (uint32, gonvml.Return) {
	return 61, d.lib.ret("temperature")
}
func (d *fakeDevice) GetTotalEccErrors(gonvml.MemoryErrorType, gonvml.EccCounterType) (uint64, gonvml.Return) {
	if d.i != 0 {
		return 0, gonvml.ERROR_NOT_SUPPORTED
	}
	return d.lib.ecc, d.lib.ret("ecc")
}
func (d *fakeDevice) RegisterEvents(uint64, gonvml.EventSet) gonvml.Return { return d.lib.ret("register") }

func (f *fakeLib) EventSetCreate() (gonvml.EventSet, gonvml.Return) {
	return &fakeSet{lib: f}, f.ret("eventset")
}

type fakeSet struct {
	gonvml.EventSet
	lib *fakeLib
}

func (s *fakeSet) Free() gonvml.Return { return gonvml.SUCCESS }
func (s *fakeSet) Wait(uint32) (gonvml.EventData, gonvml.Return) {
	select {
	case e := <-s.lib.events:
		return e, gonvml.SUCCESS
	default:
		return gonvml.EventData{}, gonvml.ERROR_TIMEOUT
	}
}

// TestTelemetryAndECC: temperature is read; uncorrected ECC errors take a
// device out of service.
func TestTelemetryAndECC(t *testing.T) {
	t.Parallel()
	lib := &fakeLib{ecc: 2}
	inv, _ := open(lib)
	devs, err := inv.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if devs[1].TemperatureC != 61 || !devs[1].Healthy {
		t.Fatalf("device 1 %+v", devs[1])
	}
	if devs[0].Healthy || devs[0].Problem != "2 uncorrected ECC errors" {
		t.Fatalf("device 0 with ECC errors: %+v", devs[0])
	}
}

// TestWatchReportsXID: a critical XID takes its device out of service at
// once; an application's XID (13) does not.
func TestWatchReportsXID(t *testing.T) {
	t.Parallel()
	lib := &fakeLib{events: make(chan gonvml.EventData, 4)}
	inv, _ := open(lib)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	faults := make(chan gpu.Fault, 4)
	done := make(chan struct{})
	go func() { inv.Watch(ctx, faults); close(done) }()
	lib.events <- gonvml.EventData{Device: &fakeDevice{lib: lib, i: 1}, EventType: gonvml.EventTypeXidCriticalError, EventData: 13}
	lib.events <- gonvml.EventData{Device: &fakeDevice{lib: lib, i: 1}, EventType: gonvml.EventTypeXidCriticalError, EventData: 79}
	f := <-faults
	if f.Index != 1 || f.UUID != "GPU-bbb" || f.Problem != "XID 79" {
		t.Fatalf("fault %+v", f)
	}
	devs, _ := inv.Devices(context.Background())
	if devs[1].Healthy || devs[1].Problem != "XID 79" || !devs[0].Healthy {
		t.Fatalf("devices after XID 79: %+v", devs)
	}
	cancel()
	<-done
	select {
	case f := <-faults:
		t.Fatalf("an application XID reported: %+v", f)
	default:
	}
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
