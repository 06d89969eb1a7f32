// Package faulttest holds the multi-host fault tests. Each starts five
// pwmesh agents, each in its own Docker container built FROM scratch from
// the static binary, on a private internal Docker network (3 voters, 2
// workers with fake GPUs), all with the test run's own cluster key.
//
// # TestMultiHostFaults: jobs through crashes, cuts and restarts
//
// While small generate_dataset jobs stream in through random live nodes,
// the test kills the leader (SIGKILL), cuts a worker off the network and
// reconnects it, restarts a worker gracefully (SIGTERM), starts the killed
// nodes again and kills the next leader. It records a history (every
// submission attempt, polled job states, the container down times) and,
// once every acknowledged job is terminal, checks the history against the
// final state read from a node that was never faulted, the RunBundles of
// the jobs and the agents' JSON logs.
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
// # TestLoseANodeForGood: the replicated store outlives a node
//
// The test uploads three datasets of random bytes (about 300 KiB each, with
// the admin token, through different nodes) and runs four generate_dataset
// jobs to success, and records the SHA-256 of every object: the uploaded
// bytes, each job's RunBundle and each job's output dataset (a dataset's
// sum is of the plaintext; nodes store it sealed). It then removes for good
// (docker rm -f -v) the node other than the leader whose disk holds most of
// those objects (with the default placement that is every object), waits,
// and checks:
//
//   - L1 stored twice: before the loss every object is on the disks of two
//     nodes (the replication factor).
//   - L2 repaired: within 60 s of the loss every object is again on the
//     disks of two surviving nodes, before the test reads any content (a
//     node that serves an object it lacks keeps the copy it fetched, which
//     would hide a missing repair). The test reads the disks with
//     `docker cp` of each container's cas/blocks folder, since the blob
//     index has no public API; it logs which survivors gained a copy.
//   - L3 readable: every survivor's GET /jobs/{id}/runbundle and GET
//     /datasets/{id}/download return every object with its recorded
//     SHA-256 and size (failures are retried for up to 60 s; wrong bytes
//     are not).
//   - L4 nothing lost: every survivor's GET /jobs/{id} and /datasets/{id}
//     answer each record unchanged, and the survivors agree on a leader.
//
// It runs by itself (not in parallel with the other Docker test: two
// clusters at once would starve each other on a small machine).
//
// # Running
//
// Run one test with
//
//	go test -run TestMultiHostFaults -v ./node/faulttest/
//	go test -run TestLoseANodeForGood -v ./node/faulttest/
//
// With PWMESH_FAULTTEST_LOGS=DIR they keep every agent's full JSON log
// there. They skip under -short and where `docker version` fails, and
// remove their containers, network and image even when they fail. The
// checker itself has unit tests on synthetic histories that always run.
package faulttest
