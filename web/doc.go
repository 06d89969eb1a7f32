// Package web serves pwmesh's HTTP API (CONTRACT.md §3) on every node: jobs,
// datasets, nodes, API keys, usage, health and Prometheus metrics.
//
// It owns request parsing, validation, authentication (bearer API keys whose
// SHA-256 is kept in the replicated state), tenant scoping (another tenant's
// object answers 404 exactly like a missing one) and the mapping of typed
// errors to JSON error bodies. It reads the replicated state through the small
// State interface and sends every write through Writer, which forwards to the
// Raft leader: the web layer never asks who leads. Content (datasets and
// RunBundles) streams through a cas.Store, never held whole in memory.
//
// All routes live in one Go 1.22 ServeMux table (routes.go), one file per
// resource. Handlers return (value, error); one wrapper writes the JSON and
// maps errors to status codes (errors.go). The node package builds a Server
// with New and mounts Handler.
package web
