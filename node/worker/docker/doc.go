// Package docker is the worker's container executor: it runs each task in
// its own container through the Docker Engine API (JSON over HTTP on the
// engine's unix socket, API 1.41 or newer), with no network, a read-only
// root file system, an unprivileged user, no capabilities, limits on
// memory, CPU and processes, the job directory mounted at /pwm and exactly
// the task's GPUs passed with a device request. It follows the
// container's logs into the task's log, kills it at its timeout or when
// its context ends, and always removes it. It also builds the built-in
// workload's image FROM scratch from a static pwmesh binary, and removes
// the containers an earlier life of the node left behind. docs/executors.md
// says what a container can and cannot do.
package docker
