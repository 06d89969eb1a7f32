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
	Healthy      bool    `json:"healthy"`
}

// Inventory lists a machine's GPUs.
type Inventory interface {
	Devices(ctx context.Context) ([]Device, error)
}

// None is the inventory of a machine without GPUs.
type None struct{}

// Devices returns no devices.
func (None) Devices(context.Context) ([]Device, error) { return nil, nil }
