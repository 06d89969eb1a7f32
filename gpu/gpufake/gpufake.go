// Package gpufake simulates GPUs from a spec such as "2xA100-80GB" or
// "1xT4-16GB,1xH100-80GB", so that placement, isolation and the API can be
// exercised on machines without GPUs.
package gpufake

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/pwmesh/pwmesh/gpu"
)

var item = regexp.MustCompile(`^([1-9][0-9]?)x([A-Za-z][A-Za-z0-9]*)-([1-9][0-9]{0,3})GB$`)

// Inventory is a fixed set of simulated devices. Fail and SetLoad change
// them as a real driver's readings would change.
type Inventory struct {
	mu     sync.Mutex
	devs   []gpu.Device
	faults chan gpu.Fault
}

var _ gpu.Watcher = (*Inventory)(nil)

// Parse reads a spec: comma-separated COUNTxMODEL-MEMGB items. seed makes
// the UUIDs unique per node (use the node ID).
func Parse(spec, seed string) (*Inventory, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, fmt.Errorf("gpufake: empty spec; want e.g. 2xA100-80GB or 1xT4-16GB,1xH100-80GB")
	}
	inv := &Inventory{faults: make(chan gpu.Fault, 64)}
	for _, part := range strings.Split(spec, ",") {
		m := item.FindStringSubmatch(strings.TrimSpace(part))
		if m == nil {
			return nil, fmt.Errorf("gpufake: bad item %q; want COUNTxMODEL-MEMGB, e.g. 2xA100-80GB", part)
		}
		n, _ := strconv.Atoi(m[1])
		mem, _ := strconv.Atoi(m[3])
		for range n {
			i := len(inv.devs)
			if i >= 64 {
				return nil, fmt.Errorf("gpufake: more than 64 devices")
			}
			inv.devs = append(inv.devs, gpu.Device{
				Index:    i,
				UUID:     fmt.Sprintf("GPU-fake-%s-%d", seed, i),
				Model:    m[2] + "-" + m[3] + "GB",
				MemoryMB: mem * 1024,
				Healthy:  true,
			})
		}
	}
	return inv, nil
}

// Devices returns the simulated devices.
func (v *Inventory) Devices(context.Context) ([]gpu.Device, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]gpu.Device, len(v.devs))
	copy(out, v.devs)
	return out, nil
}

// Fail takes device index out of service for problem (as an XID error
// would) and reports it to Watch.
func (v *Inventory) Fail(index int, problem string) error {
	v.mu.Lock()
	if index < 0 || index >= len(v.devs) {
		v.mu.Unlock()
		return fmt.Errorf("gpufake: no device %d", index)
	}
	v.devs[index].Healthy, v.devs[index].Problem = false, problem
	f := gpu.Fault{Index: index, UUID: v.devs[index].UUID, Problem: problem}
	v.mu.Unlock()
	select {
	case v.faults <- f:
	default: // nobody watches and the buffer is full: Devices still tells
	}
	return nil
}

// SetLoad sets device index's readings.
func (v *Inventory) SetLoad(index int, utilization float64, memoryUsedMB, temperatureC int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if index >= 0 && index < len(v.devs) {
		d := &v.devs[index]
		d.Utilization, d.MemoryUsedMB, d.TemperatureC = utilization, memoryUsedMB, temperatureC
	}
}

// Watch forwards the faults Fail injects until ctx ends.
func (v *Inventory) Watch(ctx context.Context, faults chan<- gpu.Fault) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-v.faults:
			select {
			case faults <- f:
			case <-ctx.Done():
				return
			}
		}
	}
}
