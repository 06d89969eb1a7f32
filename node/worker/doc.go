// Package worker runs the jobs the scheduler leases to this node: it watches
// the replicated state for assignments, prepares each job's directory
// (job.json, input/, output/, export/ — the same layout a container sees at
// /pwm), runs it through an Executor with its own time limit and captured
// logs, renews the lease while it runs, packs the output into a RunBundle in
// the content-addressed store and reports the result through Raft with the
// lease's fencing token. A result whose token is no longer current is
// refused by the FSM and dropped here.
package worker
