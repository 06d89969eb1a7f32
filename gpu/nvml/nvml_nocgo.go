//go:build !cgo || !linux

package nvml

import (
	"context"
	"fmt"

	"github.com/pwmesh/pwmesh/gpu"
)

// Inventory is absent from builds without cgo.
type Inventory struct{}

// Open reports that this build has no NVML.
func Open() (*Inventory, error) {
	return nil, fmt.Errorf("%w: built without cgo, so without NVML", gpu.ErrUnavailable)
}

// Devices returns nothing.
func (*Inventory) Devices(context.Context) ([]gpu.Device, error) { return nil, nil }

// Close does nothing.
func (*Inventory) Close() error { return nil }

// Watch reports nothing.
func (*Inventory) Watch(context.Context, chan<- gpu.Fault) {}
