// Package nvml is the GPU inventory of a machine with NVIDIA's driver: a thin
// layer over NVML (github.com/NVIDIA/go-nvml, which loads libnvidia-ml at
// run time). Built without cgo, or run without a driver, Open reports
// gpu.ErrUnavailable and the node advertises no GPUs.
package nvml
