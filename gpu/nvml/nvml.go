//go:build cgo && linux

package nvml

import (
	"context"
	"fmt"
	"sync"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/pwmesh/pwmesh/gpu"
)

// Inventory reads the devices through NVML.
type Inventory struct {
	mu  sync.Mutex
	lib gonvml.Interface
	// failed holds the devices an XID or ECC event took out of service,
	// by UUID, for the life of the process.
	failed map[string]string
}

var _ gpu.Watcher = (*Inventory)(nil)

// Open initialises NVML; without a driver it returns an error wrapping
// gpu.ErrUnavailable.
func Open() (*Inventory, error) { return open(gonvml.New()) }

func open(lib gonvml.Interface) (*Inventory, error) {
	if ret := lib.Init(); ret != gonvml.SUCCESS {
		return nil, fmt.Errorf("%w: nvml init: %s", gpu.ErrUnavailable, lib.ErrorString(ret))
	}
	return &Inventory{lib: lib, failed: map[string]string{}}, nil
}

// Devices lists the GPUs with their memory, utilisation and temperature
// now. A GPU in MIG mode is listed as its MIG slices (each a device of its
// own, named by its MIG-… UUID, with the parent's health), not as itself:
// only the slices can be handed to jobs. Indices number what is listed.
func (v *Inventory) Devices(context.Context) ([]gpu.Device, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n, ret := v.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		return nil, fmt.Errorf("nvml: device count: %s", v.lib.ErrorString(ret))
	}
	out := make([]gpu.Device, 0, n)
	for i := range n {
		d, ret := v.lib.DeviceGetHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			return nil, fmt.Errorf("nvml: device %d: %s", i, v.lib.ErrorString(ret))
		}
		dev := gpu.Device{Healthy: true}
		if dev.Model, ret = d.GetName(); ret != gonvml.SUCCESS {
			return nil, fmt.Errorf("nvml: device %d name: %s", i, v.lib.ErrorString(ret))
		}
		if dev.UUID, ret = d.GetUUID(); ret != gonvml.SUCCESS {
			return nil, fmt.Errorf("nvml: device %d uuid: %s", i, v.lib.ErrorString(ret))
		}
		v.readings(d, &dev)
		// Uncorrected (double-bit) ECC errors since the driver loaded: the
		// memory can no longer be trusted. Devices without ECC say so.
		if n, ret := d.GetTotalEccErrors(gonvml.MEMORY_ERROR_TYPE_UNCORRECTED, gonvml.VOLATILE_ECC); ret == gonvml.SUCCESS && n > 0 {
			dev.Healthy, dev.Problem = false, fmt.Sprintf("%d uncorrected ECC errors", n)
		}
		if why, ok := v.failed[dev.UUID]; ok {
			dev.Healthy, dev.Problem = false, why
		}
		if !dev.Healthy && dev.Problem == "" {
			dev.Problem = "NVML cannot read its memory"
		}
		if slices := v.migSlices(d, dev); slices != nil {
			for _, s := range slices {
				s.Index = len(out)
				out = append(out, s)
			}
			continue
		}
		dev.Index = len(out)
		out = append(out, dev)
	}
	return out, nil
}

// readings fills memory, utilisation and temperature.
func (v *Inventory) readings(d gonvml.Device, dev *gpu.Device) {
	if mem, ret := d.GetMemoryInfo(); ret == gonvml.SUCCESS {
		dev.MemoryMB, dev.MemoryUsedMB = int(mem.Total>>20), int(mem.Used>>20)
	} else {
		dev.Healthy = false
	}
	if u, ret := d.GetUtilizationRates(); ret == gonvml.SUCCESS {
		dev.Utilization = float64(u.Gpu)
	}
	if t, ret := d.GetTemperature(gonvml.TEMPERATURE_GPU); ret == gonvml.SUCCESS {
		dev.TemperatureC = int(t)
	}
}

// migSlices lists the MIG slices of parent when it is in MIG mode (nil
// otherwise). A slice shares its parent's temperature and health.
func (v *Inventory) migSlices(d gonvml.Device, parent gpu.Device) []gpu.Device {
	mode, _, ret := d.GetMigMode()
	if ret != gonvml.SUCCESS || mode != gonvml.DEVICE_MIG_ENABLE {
		return nil
	}
	max, ret := d.GetMaxMigDeviceCount()
	if ret != gonvml.SUCCESS {
		return nil
	}
	out := []gpu.Device{}
	for k := range max {
		m, ret := d.GetMigDeviceHandleByIndex(k)
		if ret != gonvml.SUCCESS {
			continue // an empty slot
		}
		s := gpu.Device{Healthy: parent.Healthy, Problem: parent.Problem, Parent: parent.UUID, TemperatureC: parent.TemperatureC}
		if s.UUID, ret = m.GetUUID(); ret != gonvml.SUCCESS {
			continue
		}
		if s.Model, ret = m.GetName(); ret != gonvml.SUCCESS {
			s.Model = parent.Model + " MIG"
		}
		if mem, ret := m.GetMemoryInfo(); ret == gonvml.SUCCESS {
			s.MemoryMB, s.MemoryUsedMB = int(mem.Total>>20), int(mem.Used>>20)
		}
		out = append(out, s)
	}
	return out
}

// ignoredXIDs are errors an application causes (a bad memory access, a
// kernel killed, a watchdog on a user's kernel): they end that program,
// not the device's usefulness.
var ignoredXIDs = map[uint64]bool{13: true, 31: true, 43: true, 45: true, 68: true, 109: true}

// eventWait bounds one wait for an NVML event, so that Watch notices ctx.
const eventWait = 500 // ms

// Watch registers for XID and double-bit ECC events on every device and
// sends a Fault for each one that takes a device out of service, until ctx
// ends. Without event support it returns at once (Devices' ECC counters
// still tell).
func (v *Inventory) Watch(ctx context.Context, faults chan<- gpu.Fault) {
	v.mu.Lock()
	set, ret := v.lib.EventSetCreate()
	if ret != gonvml.SUCCESS {
		v.mu.Unlock()
		return
	}
	defer set.Free()
	n, ret := v.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		v.mu.Unlock()
		return
	}
	uuids := map[string]int{}
	for i := range n {
		d, ret := v.lib.DeviceGetHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			continue
		}
		if u, ret := d.GetUUID(); ret == gonvml.SUCCESS {
			uuids[u] = i
		}
		// A device that supports neither event is watched through its
		// counters only.
		_ = d.RegisterEvents(gonvml.EventTypeXidCriticalError|gonvml.EventTypeDoubleBitEccError, set)
	}
	v.mu.Unlock()
	for ctx.Err() == nil {
		e, ret := set.Wait(eventWait)
		if ret == gonvml.ERROR_TIMEOUT {
			continue
		}
		if ret != gonvml.SUCCESS {
			return
		}
		var problem string
		switch {
		case e.EventType&gonvml.EventTypeDoubleBitEccError != 0:
			problem = "double-bit ECC error"
		case e.EventType&gonvml.EventTypeXidCriticalError != 0 && !ignoredXIDs[e.EventData]:
			problem = fmt.Sprintf("XID %d", e.EventData)
		default:
			continue
		}
		uuid, _ := e.Device.GetUUID()
		idx, ok := uuids[uuid]
		if !ok {
			continue
		}
		v.mu.Lock()
		v.failed[uuid] = problem
		v.mu.Unlock()
		select {
		case faults <- gpu.Fault{Index: idx, UUID: uuid, Problem: problem}:
		case <-ctx.Done():
			return
		}
	}
}

// Close shuts NVML down.
func (v *Inventory) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ret := v.lib.Shutdown(); ret != gonvml.SUCCESS {
		return fmt.Errorf("nvml: shutdown: %s", v.lib.ErrorString(ret))
	}
	return nil
}
