//go:build cgo && linux

package nvml

import (
	"context"
	"errors"
	"strings"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/pwmesh/pwmesh/gpu"
)

// fakeLib is a fake driver: two devices, and a failure switch per call.
type fakeLib struct {
	gonvml.Interface // unset methods panic: the inventory must not call them
	fail             map[string]bool
	ecc              uint64                // uncorrected ECC errors of device 0
	mig              bool                  // device 1 is in MIG mode with two slices
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
func (d *fakeDevice) RegisterEvents(uint64, gonvml.EventSet) gonvml.Return {
	return d.lib.ret("register")
}
func (d *fakeDevice) GetMigMode() (int, int, gonvml.Return) {
	if d.lib.mig && d.i == 1 {
		return gonvml.DEVICE_MIG_ENABLE, gonvml.DEVICE_MIG_ENABLE, d.lib.ret("migmode")
	}
	return 0, 0, gonvml.ERROR_NOT_SUPPORTED
}
func (d *fakeDevice) GetMaxMigDeviceCount() (int, gonvml.Return) { return 7, d.lib.ret("migcount") }
func (d *fakeDevice) GetMigDeviceHandleByIndex(k int) (gonvml.Device, gonvml.Return) {
	if k > 1 {
		return nil, gonvml.ERROR_NOT_FOUND // empty slots
	}
	return &fakeMig{k: k}, gonvml.SUCCESS
}

// fakeMig is a MIG slice of device 1.
type fakeMig struct {
	gonvml.Device
	k int
}

func (m *fakeMig) GetUUID() (string, gonvml.Return) {
	return []string{"MIG-111", "MIG-222"}[m.k], gonvml.SUCCESS
}
func (m *fakeMig) GetName() (string, gonvml.Return) {
	return "NVIDIA H100 80GB HBM3 MIG 3g.40gb", gonvml.SUCCESS
}
func (m *fakeMig) GetMemoryInfo() (gonvml.Memory, gonvml.Return) {
	return gonvml.Memory{Total: 40 << 30, Used: 0}, gonvml.SUCCESS
}

// TestMIGSlicesAreDevices: a GPU in MIG mode is listed as its slices, each
// with its MIG UUID and memory, failing with their parent.
func TestMIGSlicesAreDevices(t *testing.T) {
	t.Parallel()
	lib := &fakeLib{mig: true, events: make(chan gonvml.EventData, 1)}
	inv, _ := open(lib)
	devs, err := inv.Devices(context.Background())
	if err != nil || len(devs) != 3 {
		t.Fatalf("devices %+v, %v", devs, err)
	}
	if devs[0].UUID != "GPU-aaa" || devs[1].UUID != "MIG-111" || devs[2].UUID != "MIG-222" {
		t.Fatalf("uuids %s %s %s", devs[0].UUID, devs[1].UUID, devs[2].UUID)
	}
	s := devs[2]
	if s.Index != 2 || s.Parent != "GPU-bbb" || s.MemoryMB != 40<<10 || !strings.Contains(s.Model, "MIG 3g.40gb") || !s.Healthy {
		t.Fatalf("slice %+v", s)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	faults := make(chan gpu.Fault, 1)
	go inv.Watch(ctx, faults)
	lib.events <- gonvml.EventData{Device: &fakeDevice{lib: lib, i: 1}, EventType: gonvml.EventTypeXidCriticalError, EventData: 48}
	<-faults
	devs, _ = inv.Devices(context.Background())
	if devs[0].Healthy == false || devs[1].Healthy || devs[2].Healthy || devs[1].Problem != "XID 48" {
		t.Fatalf("after the parent's XID: %+v", devs)
	}
}

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

// BenchmarkFingerprint is what a node spends on its GPUs at start: NVML
// init, the device list with readings, shutdown. It needs a driver (make
// gpu-check's machine); without one it is skipped.
func BenchmarkFingerprint(b *testing.B) {
	if _, err := Open(); err != nil {
		b.Skipf("no NVML here: %v", err)
	}
	n := 0
	for b.Loop() {
		inv, err := Open()
		if err != nil {
			b.Fatal(err)
		}
		devs, err := inv.Devices(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		n = len(devs)
		if err := inv.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "gpus")
}
