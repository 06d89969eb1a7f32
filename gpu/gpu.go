// Package gpu defines the GPU inventory a node advertises and places jobs
// on. Implementations sit in sub-packages: gpufake simulates devices for
// tests and demos; a real NVML-backed inventory plugs in behind the same
// interface.
package gpu

import (
	"context"
	"errors"
)

// ErrUnavailable means no GPU driver answers on this machine.
var ErrUnavailable = errors.New("gpu: no GPU driver available")

// Device is one GPU as the node sees it.
type Device struct {
	Index        int     `json:"index"`
	UUID         string  `json:"uuid"`
	Model        string  `json:"model"`
	MemoryMB     int     `json:"memory_mb"`
	MemoryUsedMB int     `json:"memory_used_mb"`
	Utilization  float64 `json:"utilization"` // percent, 0–100
	TemperatureC int     `json:"temperature_c"`
	Healthy      bool    `json:"healthy"`
	// Problem says why an unhealthy device is out of service (an XID
	// error, uncorrected ECC errors).
	Problem string `json:"problem,omitempty"`
	// Parent is the physical GPU's UUID when this device is a MIG slice.
	Parent string `json:"parent,omitempty"`
}

// Fault is a device failing: an inventory that can watch for failures
// sends one as soon as the driver reports it. UUID names the physical GPU
// (its MIG slices fail with it); Index is its driver index.
type Fault struct {
	Index   int
	UUID    string
	Problem string
}

// Watcher is an Inventory that reports device failures as they happen
// (NVML events); Devices then shows the device unhealthy for good.
type Watcher interface {
	Inventory
	// Watch sends faults until ctx ends.
	Watch(ctx context.Context, faults chan<- Fault)
}

// Inventory lists a machine's GPUs.
type Inventory interface {
	Devices(ctx context.Context) ([]Device, error)
}

// None is the inventory of a machine without GPUs.
type None struct{}

// Devices returns no devices.
func (None) Devices(context.Context) ([]Device, error) { return nil, nil }
