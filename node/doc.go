// Package node is pwmesh's composition root: it reads a Config, builds every
// subsystem (the Raft-backed scheduler, the content-addressed store, the
// worker and its executor, the GPU inventory, the HTTP API) and hands each
// only the narrow interfaces it needs. Run starts them and, when its context
// ends, stops them in one written order: HTTP, worker (running jobs handed
// back), leader loop, Raft, store.
package node
