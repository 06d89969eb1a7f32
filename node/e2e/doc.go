// Package e2e holds the end-to-end tests: they build the pwmesh binary, start
// `pwmesh agent --dev` on free ports in a temporary directory and drive it
// only through its HTTP API and CLI, the way a user would.
package e2e
