// Package grafana holds pwmesh's Grafana dashboard (pwmesh.json, a
// Grafana JSON model with a Prometheus data source variable) and reads
// the metric names its queries use, so that tests can check that real
// nodes export every one (node's TestClusterMetrics).
// docs/operations.md says how to import it.
package grafana
