// Package prometheus holds pwmesh's Prometheus alert rules (alerts.yml)
// and their promtool unit tests (alerts_test.yml); its Go tests run
// promtool on both. It has no code: docs/operations.md says how to load
// the rules.
package prometheus
