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
}

// Open initialises NVML; without a driver it returns an error wrapping
// gpu.ErrUnavailable.
func Open() (*Inventory, error) { return open(gonvml.New()) }

func open(lib gonvml.Interface) (*Inventory, error) {
	if ret := lib.Init(); ret != gonvml.SUCCESS {
		return nil, fmt.Errorf("%w: nvml init: %s", gpu.ErrUnavailable, lib.ErrorString(ret))
	}
	return &Inventory{lib: lib}, nil
}

// Devices lists the GPUs with their memory and utilisation now.
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
		dev := gpu.Device{Index: i, Healthy: true}
		if dev.Model, ret = d.GetName(); ret != gonvml.SUCCESS {
			return nil, fmt.Errorf("nvml: device %d name: %s", i, v.lib.ErrorString(ret))
		}
		if dev.UUID, ret = d.GetUUID(); ret != gonvml.SUCCESS {
			return nil, fmt.Errorf("nvml: device %d uuid: %s", i, v.lib.ErrorString(ret))
		}
		if mem, ret := d.GetMemoryInfo(); ret == gonvml.SUCCESS {
			dev.MemoryMB, dev.MemoryUsedMB = int(mem.Total>>20), int(mem.Used>>20)
		} else {
			dev.Healthy = false
		}
		if u, ret := d.GetUtilizationRates(); ret == gonvml.SUCCESS {
			dev.Utilization = float64(u.Gpu)
		}
		out = append(out, dev)
	}
	return out, nil
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
