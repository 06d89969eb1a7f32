// Package faulttest holds the multi-host fault test (TestMultiHostFaults):
// five pwmesh agents, each in its own Docker container built FROM scratch
// from the static binary, on a private internal Docker network (3 voters,
// 2 workers with fake GPUs). While small generate_dataset jobs stream in
// through random live nodes, the test kills the leader (SIGKILL), cuts a
// worker off the network and reconnects it, restarts a worker gracefully
// (SIGTERM), starts the killed nodes again and kills the next leader. It
// records a history (every submission attempt, polled job states, the
// container down times) and, once every acknowledged job is terminal, checks
// the history against the final state read from a node that was never
// faulted, the RunBundles of the jobs and the agents' JSON logs.
//
// The checker's rules (each violation names its job):
//
//   - R1 no acknowledged job lost: every job ID answered with 202 exists in
//     the final state.
//   - R2 idempotency: all 202 answers for one Idempotency-Key carry the same
//     job ID, and the final state holds at most one job per key (retries
//     after failed or timed-out requests never duplicate a job), and no job
//     the test never submitted.
//   - R3 every job ends in a final state: succeeded with a RunBundle, or
//     failed/timed_out with an error code and message. The small
//     generate_dataset jobs must succeed. Every third job is a heavier
//     calibrate_and_reconstruct (about 4 s, so that faults hit runners
//     mid-job) of a dataset that one node made; its failure with a reason
//     (the dataset's only copy unreachable, say) is logged as a note, since
//     dataset replication is not this test's subject.
//   - R4 terminal states are final: a terminal state polled from any node
//     during the run equals the final state (and the same RunBundle CID).
//   - R5 one runner per fencing token: a token is started ("job started"
//     log line) by at most one node process, once.
//   - R6 no two runners at once beyond one lease: a run is the interval
//     from its "job started" line to the first of its node's "job finished",
//     "job stopped: ...", "job handed back", "job result refused/not
//     recorded" lines for that job, or to the moment the test took its
//     container down (kill, stop). For any two runs of one job with
//     different tokens, the time both were running must not exceed the lease
//     TTL plus a 1 s tolerance for log stamping on a loaded machine
//     (docs/consensus.md: a cut-off runner overlaps its successor by at most
//     about one TTL). Every run must also end (a runner on a live node whose
//     job is terminal but that never logged an end is a leak).
//   - R7 the accepted result is fenced: a succeeded job's RunBundle manifest
//     `execution` names the job, the job's node and attempts, and the fencing
//     token of the job's last started run (the highest token started for it),
//     and that run was on that node. (Whether the runner logged "job
//     finished" is not required: a completion committed just before its
//     leader died may be answered with an error and logged as refused.)
//   - R8 at most one accepted completion per job: at most one "job finished"
//     line per job across all nodes.
//   - R9 results verify: every succeeded job's RunBundle downloads from the
//     surviving node with the job's size and sha256, passes bundle.Verify
//     with the job's CID, and its output dataset exists.
//   - R10 the mesh heals: at the end all five nodes answer /health 200 with
//     one leader and five members.
//
// Run only this test with
//
//	go test -run TestMultiHostFaults -v ./node/faulttest/
//
// With PWMESH_FAULTTEST_LOGS=DIR it keeps every agent's full JSON log there.
// It skips under -short and where `docker version` fails. The checker itself
// has unit tests on synthetic histories that always run.
package faulttest
