// Package scheduler owns the replicated control plane of pwmesh: the
// deterministic Raft FSM (tenants, API keys, datasets, jobs, leases, nodes,
// the compiled-operator index), the priority queue, the pure placement
// function and the leader loop that turns placement into Raft commands.
//
// Nothing here does network or disk I/O except through the Raft library it is
// given; the node package composes it with the mesh, the store and the web API.
package scheduler
