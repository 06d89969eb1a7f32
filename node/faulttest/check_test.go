package faulttest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/cas/bundle"
)

var epoch = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func atMs(ms int) time.Time { return epoch.Add(time.Duration(ms) * time.Millisecond) }

func logJSON(ms int, msg, node, job string, token uint64, state string) string {
	s := fmt.Sprintf(`{"time":%q,"level":"INFO","msg":%q,"node_id":%q`, atMs(ms).Format(time.RFC3339Nano), msg, node)
	if job != "" {
		s += fmt.Sprintf(`,"job_id":%q`, job)
	}
	if token != 0 {
		s += fmt.Sprintf(`,"token":%d`, token)
	}
	if state != "" {
		s += fmt.Sprintf(`,"state":%q`, state)
	}
	return s + "}\n"
}

func TestParseRuns(t *testing.T) {
	t.Parallel()
	logs := "pwmesh node n1 is ready\n" +
		logJSON(0, "job started", "n1", "j1", 5, "") +
		logJSON(100, "job finished", "n1", "j1", 0, "succeeded") +
		logJSON(200, "job started", "n1", "j2", 7, "") +
		logJSON(300, "job started", "n1", "j3", 8, "") +
		// the container is killed at 1000 ms and started again
		logJSON(2000, "job started", "n1", "j4", 12, "") +
		logJSON(2500, "job stopped: lease lost", "n1", "j4", 12, "") +
		logJSON(2600, "job started", "n1", "j5", 13, "") +
		logJSON(2700, "job result refused: lease no longer held", "n1", "j5", 0, "") +
		logJSON(2800, "job started", "n1", "j6", 14, "")
	runs, fins, err := parseRuns("c1", []byte(logs), []time.Time{atMs(1000)})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		job     string
		token   uint64
		life    int
		end     time.Time
		endedBy string
	}{
		{"j1", 5, 0, atMs(100), "job finished"},
		{"j2", 7, 0, atMs(1000), "container down"},
		{"j3", 8, 0, atMs(1000), "container down"},
		{"j4", 12, 1, atMs(2500), "job stopped: lease lost"},
		{"j5", 13, 1, atMs(2700), "job result refused: lease no longer held"},
		{"j6", 14, 1, time.Time{}, ""},
	}
	if len(runs) != len(want) {
		t.Fatalf("runs: %s", describeRuns(runs))
	}
	for i, w := range want {
		r := runs[i]
		if r.JobID != w.job || r.Token != w.token || r.Life != w.life || !r.End.Equal(w.end) || r.EndedBy != w.endedBy || r.Container != "c1" || r.Node != "n1" {
			t.Errorf("run %d: %+v, want %+v", i, r, w)
		}
	}
	if len(fins) != 1 || fins[0].JobID != "j1" || fins[0].State != "succeeded" {
		t.Errorf("finishes: %+v", fins)
	}
}

// goodInput is a history that passes: two jobs, the second run twice
// (its first node was cut off) with a short overlap.
func goodInput() checkInput {
	seed := func(i int) *int { return &i }
	job := func(id string, s int, node string, attempts int, cid string) apiJob {
		j := apiJob{ID: id, Type: "generate_dataset", State: "succeeded", Node: node, Attempts: attempts}
		j.Params.Seed = seed(s)
		j.RunBundle = &struct {
			CID    string `json:"cid"`
			SHA256 string `json:"sha256"`
			Size   int64  `json:"size"`
		}{cid, "ab", 1}
		return j
	}
	return checkInput{
		LeaseTTL:    5 * time.Second,
		MustSucceed: map[string]bool{"generate_dataset": true},
		Ops: []submitOp{
			{Seed: 0, Key: "k0", Container: "c1", OK: true, JobID: "j0", Status: 202},
			{Seed: 1, Key: "k1", Container: "c2", Err: "timeout"},
			{Seed: 1, Key: "k1", Container: "c3", OK: true, JobID: "j1", Status: 202},
			{Seed: 2, Key: "k2", Container: "c3", Err: "timeout"}, // never acknowledged, never created
		},
		Obs: []observation{{JobID: "j0", State: "running"}, {JobID: "j0", State: "succeeded", CID: "cid0"}},
		Final: map[string]apiJob{
			"j0": job("j0", 0, "n1", 1, "cid0"),
			"j1": job("j1", 1, "n2", 2, "cid1"),
		},
		Runs: []run{
			{JobID: "j0", Token: 10, Node: "n1", Start: atMs(0), End: atMs(100), EndedBy: "job finished"},
			{JobID: "j1", Token: 11, Node: "n3", Start: atMs(0), End: atMs(6000), EndedBy: "job stopped: lease lost"},
			{JobID: "j1", Token: 20, Node: "n2", Start: atMs(3000), End: atMs(9000), EndedBy: "job finished"},
		},
		Finishes: []finishLine{{JobID: "j0", Node: "n1", State: "succeeded"}, {JobID: "j1", Node: "n2", State: "succeeded"}},
		Execs: map[string]bundle.Execution{
			"j0": {JobID: "j0", Node: "n1", Attempts: 1, FencingToken: 10},
			"j1": {JobID: "j1", Node: "n2", Attempts: 2, FencingToken: 20},
		},
	}
}

func TestCheckerAcceptsAGoodHistory(t *testing.T) {
	t.Parallel()
	if v, _ := check(goodInput()); len(v) != 0 {
		t.Fatalf("violations in a good history:\n%s", strings.Join(v, "\n"))
	}
}

func TestCheckerNotesFailuresOfOtherTypes(t *testing.T) {
	t.Parallel()
	in := goodInput()
	j := in.Final["j1"]
	j.Type, j.State, j.RunBundle = "calibrate_and_reconstruct", "failed", nil
	j.Error = &struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"dataset_unavailable", "dataset ds_1: not found"}
	in.Final["j1"] = j
	delete(in.Execs, "j1")
	v, notes := check(in)
	if len(v) != 0 || len(notes) != 1 || !strings.Contains(notes[0], "dataset_unavailable") {
		t.Errorf("violations %q, notes %q", v, notes)
	}
}

func TestCheckerFindsViolations(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		mutate func(in *checkInput)
		want   string
	}{
		{"lost", func(in *checkInput) { delete(in.Final, "j0") }, "R1 lost: job j0"},
		{"two ids for one key", func(in *checkInput) {
			in.Ops = append(in.Ops, submitOp{Seed: 1, Key: "k1", OK: true, JobID: "j9"})
			j := in.Final["j1"]
			j.ID = "j9"
			in.Final["j9"] = j
		}, "R2 duplicate: key k1 was acknowledged as j1 and as j9"},
		{"duplicate job for a key", func(in *checkInput) {
			j := in.Final["j1"]
			j.ID = "j7"
			in.Final["j7"] = j
		}, "R2 duplicate: key k1 made 2 jobs"},
		{"phantom", func(in *checkInput) {
			j := in.Final["j1"]
			j.ID, j.Params.Seed = "j8", new(int)
			*j.Params.Seed = 42
			in.Final["j8"] = j
		}, "R2 phantom: job j8"},
		{"not final", func(in *checkInput) { j := in.Final["j0"]; j.State = "running"; in.Final["j0"] = j }, "R3 not final: job j0 is running"},
		{"failed without reason", func(in *checkInput) { j := in.Final["j0"]; j.State = "failed"; in.Final["j0"] = j }, "R3 failed without a reason: job j0"},
		{"failed", func(in *checkInput) {
			j := in.Final["j0"]
			j.State, j.Error = "failed", &struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			}{"internal", "boom"}
			in.Final["j0"] = j
		}, "R3 expected success: generate_dataset job j0 failed: internal: boom"},
		{"succeeded without bundle", func(in *checkInput) { j := in.Final["j0"]; j.RunBundle = nil; in.Final["j0"] = j }, "R3 succeeded without a RunBundle: job j0"},
		{"terminal changed", func(in *checkInput) {
			in.Obs = append(in.Obs, observation{JobID: "j0", State: "failed", Container: "c2"})
		}, "R4 terminal state changed: job j0 was failed"},
		{"token twice", func(in *checkInput) {
			in.Runs = append(in.Runs, run{JobID: "j0", Token: 10, Node: "n4", Start: atMs(50), End: atMs(60), EndedBy: "job result refused: lease no longer held"})
		}, "R5 token run twice: job j0 token 10"},
		{"long overlap", func(in *checkInput) { in.Runs[1].End, in.Runs[2].End = atMs(9500), atMs(9600) }, "R6 two runners at once: job j1 ran 6.5s"},
		{"never ended", func(in *checkInput) { in.Runs[1].End, in.Runs[1].EndedBy = time.Time{}, "" }, "R6 runner never ended: job j1 token 11"},
		{"stale result", func(in *checkInput) {
			x := in.Execs["j1"]
			x.FencingToken, x.Node = 11, "n3"
			j := in.Final["j1"]
			j.Node = "n3"
			in.Final["j1"] = j
			in.Execs["j1"] = x
			in.Finishes[1].Node = "n3"
		}, "R7 stale result accepted: job j1 result carries token 11"},
		{"manifest disagrees", func(in *checkInput) { x := in.Execs["j0"]; x.Attempts = 3; in.Execs["j0"] = x }, "R7 manifest of job j0"},
		{"no manifest", func(in *checkInput) { delete(in.Execs, "j0") }, "R7 no verified manifest: job j0"},
		{"completed twice", func(in *checkInput) {
			in.Finishes = append(in.Finishes, finishLine{JobID: "j1", Node: "n3", State: "succeeded"})
		}, "R8 completed twice: job j1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			in := goodInput()
			c.mutate(&in)
			v, _ := check(in)
			for _, s := range v {
				if strings.Contains(s, c.want) {
					return
				}
			}
			t.Errorf("want a violation containing %q, got:\n%s", c.want, strings.Join(v, "\n"))
		})
	}
}

func TestStaleStarts(t *testing.T) {
	t.Parallel()
	runs := []run{
		{JobID: "j1", Token: 49, Node: "n4", Start: atMs(0), End: atMs(50)},
		{JobID: "j1", Token: 42, Node: "n5", Start: atMs(11000), End: atMs(11060)},
		{JobID: "j2", Token: 3, Node: "n1", Start: atMs(0), End: atMs(50)},
		{JobID: "j2", Token: 9, Node: "n2", Start: atMs(100), End: atMs(150)},
	}
	n := staleStarts(runs)
	if len(n) != 1 || !strings.Contains(n[0], "job j1 token 42 started on n5") {
		t.Errorf("notes: %q", n)
	}
}
