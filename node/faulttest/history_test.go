package faulttest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/cas/bundle"
)

// overlapTolerance is added to the lease TTL in rule R6: log lines are
// stamped by loaded processes on a 2-core machine.
const overlapTolerance = time.Second

// submitOp is one POST /jobs attempt of the history: invoked at Invoke,
// answered (or failed) at Return. OK means a 202 with JobID; anything else
// is indeterminate (the job may or may not exist).
type submitOp struct {
	Seed      int
	Key       string // Idempotency-Key
	Container string
	Invoke    time.Time
	Return    time.Time
	OK        bool
	Status    int // 0 on a transport error
	JobID     string
	Err       string
}

// observation is one job state polled from one node during the run.
type observation struct {
	At        time.Time
	Container string
	JobID     string
	State     string
	CID       string
}

// apiJob is the part of the contract's job the checker reads.
type apiJob struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	State    string `json:"state"`
	Node     string `json:"node"`
	Attempts int    `json:"attempts"`
	Reason   string `json:"reason"`
	Params   struct {
		Seed *int `json:"seed"`
	} `json:"params"`
	RunBundle *struct {
		CID    string `json:"cid"`
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	} `json:"runbundle"`
	Outputs map[string]string `json:"outputs"`
	Error   *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	SubmittedAt time.Time  `json:"submitted_at"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
}

func (j apiJob) cid() string {
	if j.RunBundle == nil {
		return ""
	}
	return j.RunBundle.CID
}

func terminal(state string) bool {
	switch state {
	case "succeeded", "failed", "cancelled", "timed_out":
		return true
	}
	return false
}

// run is one runner of one job on one node process, from the node's logs.
type run struct {
	JobID     string
	Token     uint64
	Node      string // node_id
	Container string
	Life      int // which start of the container (0 = first)
	Start     time.Time
	End       time.Time // zero: never ended
	EndedBy   string    // the log message or "container down"
}

// finishLine is a "job finished" log line: a completion the FSM accepted.
type finishLine struct {
	JobID     string
	Node      string
	Container string
	State     string
	At        time.Time
}

type logLine struct {
	Time   time.Time `json:"time"`
	Msg    string    `json:"msg"`
	NodeID string    `json:"node_id"`
	JobID  string    `json:"job_id"`
	Token  uint64    `json:"token"`
	State  string    `json:"state"`
}

// endsRun reports whether a worker log message ends a run of its job_id.
func endsRun(msg string) bool {
	return msg == "job finished" || msg == "job handed back" || msg == "worker: hand back on shutdown" ||
		strings.HasPrefix(msg, "job stopped") || strings.HasPrefix(msg, "job result ")
}

// parseRuns reads one container's JSON log (every life of it, in order) and
// the times the test took it down, and returns its runs and accepted
// completions. A down closes every run still open at that time.
func parseRuns(container string, logs []byte, downs []time.Time) ([]run, []finishLine, error) {
	var lines []logLine
	sc := bufio.NewScanner(bytes.NewReader(logs))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 || b[0] != '{' {
			continue // the agent's human lines on stdout
		}
		var l logLine
		if err := json.Unmarshal(b, &l); err != nil || l.Time.IsZero() {
			continue
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read logs of %s: %w", container, err)
	}
	sort.SliceStable(lines, func(a, b int) bool { return lines[a].Time.Before(lines[b].Time) })
	downs = slices.Clone(downs)
	slices.SortFunc(downs, func(a, b time.Time) int { return a.Compare(b) })

	var (
		runs     []run
		finishes []finishLine
		open     = map[string]int{} // job ID → index in runs
		life     int
	)
	closeAll := func(at time.Time) {
		for id, i := range open {
			runs[i].End, runs[i].EndedBy = at, "container down"
			delete(open, id)
		}
		life++
	}
	for _, l := range lines {
		for len(downs) > 0 && !downs[0].After(l.Time) {
			closeAll(downs[0])
			downs = downs[1:]
		}
		if l.JobID == "" {
			continue
		}
		switch {
		case l.Msg == "job started":
			if i, ok := open[l.JobID]; ok {
				// A second start of the job while one is open: close the
				// first here so R6 sees both.
				runs[i].End, runs[i].EndedBy = l.Time, "restarted"
			}
			runs = append(runs, run{JobID: l.JobID, Token: l.Token, Node: l.NodeID, Container: container, Life: life, Start: l.Time})
			open[l.JobID] = len(runs) - 1
		case endsRun(l.Msg):
			if i, ok := open[l.JobID]; ok {
				runs[i].End, runs[i].EndedBy = l.Time, l.Msg
				delete(open, l.JobID)
			}
			if l.Msg == "job finished" {
				finishes = append(finishes, finishLine{JobID: l.JobID, Node: l.NodeID, Container: container, State: l.State, At: l.Time})
			}
		}
	}
	if len(downs) > 0 && len(open) > 0 {
		closeAll(downs[0])
	}
	return runs, finishes, nil
}

// checkInput is everything the checker looks at.
type checkInput struct {
	LeaseTTL time.Duration
	Ops      []submitOp
	Obs      []observation
	// Final holds every job of the test's tenant, read from a surviving node
	// once all acknowledged jobs were terminal.
	Final    map[string]apiJob
	Runs     []run
	Finishes []finishLine
	// Execs holds the RunBundle manifests' execution records of the
	// succeeded jobs whose bundles verified.
	Execs map[string]bundle.Execution
	// MustSucceed names the job types that must end succeeded; a job of
	// another type may also end failed or timed_out with a reason (noted).
	MustSucceed map[string]bool
}

// staleStarts lists runs that started after a run of the same job with a
// higher token had started: a node acting on an assignment its replica had
// not yet seen superseded (typically while catching up after a partition).
// Fencing makes them harmless for the result, and R6 bounds their overlap,
// so they are reported as notes, not violations.
func staleStarts(runs []run) []string {
	byJob := map[string][]run{}
	for _, r := range runs {
		byJob[r.JobID] = append(byJob[r.JobID], r)
	}
	var notes []string
	for _, id := range slices.Sorted(maps.Keys(byJob)) {
		rs := byJob[id]
		slices.SortFunc(rs, func(a, b run) int { return a.Start.Compare(b.Start) })
		var newest run
		for i, r := range rs {
			if i > 0 && r.Token < newest.Token {
				notes = append(notes, fmt.Sprintf("stale start: job %s token %d started on %s at %s, after token %d had started on %s at %s",
					id, r.Token, r.Node, r.Start.Format("15:04:05.000"), newest.Token, newest.Node, newest.Start.Format("15:04:05.000")))
			}
			if r.Token > newest.Token {
				newest = r
			}
		}
	}
	return notes
}

// check applies rules R1–R8 (doc.go) and returns the violations, and notes
// on what is allowed but worth a look.
func check(in checkInput) (v, notes []string) {
	bad := func(format string, args ...any) { v = append(v, fmt.Sprintf(format, args...)) }

	// R1, R2.
	keyOf := map[int]string{}
	ackByKey := map[string]string{}
	for _, op := range in.Ops {
		keyOf[op.Seed] = op.Key
		if !op.OK {
			continue
		}
		if _, ok := in.Final[op.JobID]; !ok {
			bad("R1 lost: job %s (key %s) was acknowledged by %s at %s but is not in the final state", op.JobID, op.Key, op.Container, op.Return.Format(time.RFC3339Nano))
		}
		if prev, ok := ackByKey[op.Key]; ok && prev != op.JobID {
			bad("R2 duplicate: key %s was acknowledged as %s and as %s", op.Key, prev, op.JobID)
		}
		ackByKey[op.Key] = op.JobID
	}
	jobsBySeed := map[int][]string{}
	for _, id := range slices.Sorted(maps.Keys(in.Final)) {
		j := in.Final[id]
		if j.Params.Seed == nil || keyOf[*j.Params.Seed] == "" {
			bad("R2 phantom: job %s (params seed %v) was never submitted by the test", id, j.Params.Seed)
			continue
		}
		jobsBySeed[*j.Params.Seed] = append(jobsBySeed[*j.Params.Seed], id)
	}
	for _, seed := range slices.Sorted(maps.Keys(jobsBySeed)) {
		if ids := jobsBySeed[seed]; len(ids) > 1 {
			bad("R2 duplicate: key %s made %d jobs: %v", keyOf[seed], len(ids), ids)
		}
	}

	// R3.
	for _, id := range slices.Sorted(maps.Keys(in.Final)) {
		j := in.Final[id]
		switch {
		case !terminal(j.State):
			bad("R3 not final: job %s is %s (attempts %d, reason %q)", id, j.State, j.Attempts, j.Reason)
		case j.State == "succeeded":
			if j.RunBundle == nil || j.RunBundle.CID == "" || j.RunBundle.SHA256 == "" {
				bad("R3 succeeded without a RunBundle: job %s", id)
			}
		case j.State == "failed" || j.State == "timed_out":
			switch {
			case j.Error == nil || j.Error.Code == "" || j.Error.Message == "":
				bad("R3 %s without a reason: job %s", j.State, id)
			case in.MustSucceed[j.Type]:
				bad("R3 expected success: %s job %s %s: %s: %s (attempts %d)", j.Type, id, j.State, j.Error.Code, j.Error.Message, j.Attempts)
			default:
				notes = append(notes, fmt.Sprintf("%s job %s %s: %s: %s (attempts %d)", j.Type, id, j.State, j.Error.Code, j.Error.Message, j.Attempts))
			}
		default:
			if in.MustSucceed[j.Type] {
				bad("R3 expected success: %s job %s is %s", j.Type, id, j.State)
			}
		}
	}

	// R4.
	for _, o := range in.Obs {
		f, ok := in.Final[o.JobID]
		if !ok || !terminal(o.State) {
			continue
		}
		if o.State != f.State || o.CID != f.cid() {
			bad("R4 terminal state changed: job %s was %s (cid %s) on %s at %s, finally %s (cid %s)",
				o.JobID, o.State, o.CID, o.Container, o.At.Format(time.RFC3339Nano), f.State, f.cid())
		}
	}

	// R5, R6.
	byJob := map[string][]run{}
	for _, r := range in.Runs {
		byJob[r.JobID] = append(byJob[r.JobID], r)
	}
	limit := in.LeaseTTL + overlapTolerance
	for _, id := range slices.Sorted(maps.Keys(byJob)) {
		rs := byJob[id]
		slices.SortFunc(rs, func(a, b run) int { return a.Start.Compare(b.Start) })
		starts := map[uint64][]run{}
		for _, r := range rs {
			starts[r.Token] = append(starts[r.Token], r)
			if r.End.IsZero() {
				if f, ok := in.Final[id]; ok && terminal(f.State) {
					bad("R6 runner never ended: job %s token %d on %s (%s) started %s and logged no end; the job is %s",
						id, r.Token, r.Node, r.Container, r.Start.Format(time.RFC3339Nano), f.State)
				}
			}
		}
		for _, tok := range slices.Sorted(maps.Keys(starts)) {
			if s := starts[tok]; len(s) > 1 {
				bad("R5 token run twice: job %s token %d started %d times: %s", id, tok, len(s), describeRuns(s))
			}
		}
		for a := 0; a < len(rs); a++ {
			for b := a + 1; b < len(rs); b++ {
				if rs[a].Token == rs[b].Token {
					continue
				}
				if ov := overlap(rs[a], rs[b]); ov > limit {
					bad("R6 two runners at once: job %s ran %s concurrently (limit %s = lease TTL %s + %s): %s",
						id, ov.Round(time.Millisecond), limit, in.LeaseTTL, overlapTolerance, describeRuns([]run{rs[a], rs[b]}))
				}
			}
		}
	}

	// R7, R8.
	finByJob := map[string][]finishLine{}
	for _, f := range in.Finishes {
		finByJob[f.JobID] = append(finByJob[f.JobID], f)
	}
	for _, id := range slices.Sorted(maps.Keys(finByJob)) {
		if fs := finByJob[id]; len(fs) > 1 {
			var s []string
			for _, f := range fs {
				s = append(s, fmt.Sprintf("%s on %s at %s", f.State, f.Node, f.At.Format(time.RFC3339Nano)))
			}
			bad("R8 completed twice: job %s: %s", id, strings.Join(s, "; "))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(in.Final)) {
		j := in.Final[id]
		if j.State != "succeeded" {
			continue
		}
		x, ok := in.Execs[id]
		if !ok {
			bad("R7 no verified manifest: job %s", id)
			continue
		}
		if x.JobID != id || x.Node != j.Node || x.Attempts != j.Attempts {
			bad("R7 manifest of job %s names job %s node %s attempts %d; the job says node %s attempts %d", id, x.JobID, x.Node, x.Attempts, j.Node, j.Attempts)
		}
		var last *run
		for i, r := range byJob[id] {
			if last == nil || r.Token > last.Token {
				last = &byJob[id][i]
			}
		}
		switch {
		case last == nil:
			bad("R7 job %s succeeded but no node logged starting it", id)
		case x.FencingToken != last.Token:
			bad("R7 stale result accepted: job %s result carries token %d from %s, but token %d was started later on %s (%s)",
				id, x.FencingToken, x.Node, last.Token, last.Node, last.Container)
		case last.Node != x.Node:
			bad("R7 job %s: its last run (token %d) was on %s, the result is from %s", id, last.Token, last.Node, x.Node)
		}
		if fs := finByJob[id]; len(fs) == 1 && (fs[0].State != "succeeded" || fs[0].Node != x.Node) {
			bad("R7 job %s: the accepted completion was %s on %s, the result is from %s", id, fs[0].State, fs[0].Node, x.Node)
		}
	}
	return v, notes
}

func overlap(a, b run) time.Duration {
	end := func(r run) time.Time {
		if r.End.IsZero() {
			return time.Unix(1<<40, 0) // still running
		}
		return r.End
	}
	lo, hi := a.Start, end(a)
	if b.Start.After(lo) {
		lo = b.Start
	}
	if e := end(b); e.Before(hi) {
		hi = e
	}
	if hi.Before(lo) {
		return 0
	}
	return hi.Sub(lo)
}

func describeRuns(rs []run) string {
	var s []string
	for _, r := range rs {
		end := "never"
		if !r.End.IsZero() {
			end = r.End.Format("15:04:05.000") + " (" + r.EndedBy + ")"
		}
		s = append(s, fmt.Sprintf("[token %d on %s/%s life %d: %s → %s]", r.Token, r.Node, r.Container, r.Life, r.Start.Format("15:04:05.000"), end))
	}
	return strings.Join(s, " ")
}
