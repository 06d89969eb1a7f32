// Package workload is pwmesh's built-in reference workload (WORKLOAD.md): a
// single-pixel camera with detector gain/bias mismatch, in pure Go, so that the
// mesh does real work on any machine without PWM's CUDA image.
//
// It owns the job types, one registry entry each (registry.go: params,
// dataset and GPU needs, run function) that the API, the worker and the CLI
// read: generate_dataset, calibrate, reconstruct, calibrate_and_reconstruct
// and gpu_selftest; the validation of their params and datasets
// (every request error wraps ErrInvalidParams), the compiled operator A and
// its Lipschitz constant with their cache key and binary form, and the maths:
// the phantom, the measurement model y = g·(A x) + b + n, least-squares
// calibration with a bootstrap interval, FISTA with a TV proximal step, PSNR
// and SSIM. It does no I/O of its own: Run takes bytes in and hands bytes out
// (artifacts, dataset, compiled operator), and the node stores them.
//
// Everything is deterministic: the same request gives byte-identical
// artifacts, whatever the machine's load (no goroutines, fixed summation
// order, seeded PCG generators from math/rand/v2).
//
// The array format lives in the sub-package npy.
package workload
