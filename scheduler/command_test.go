package scheduler

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// allCommands holds one fully populated value of every command type.
func allCommands() []Command {
	exp := t0.Add(time.Minute)
	return []Command{
		&CreateKey{At: t0, Key: APIKey{Hash: "h", Prefix: "pw", Tenant: "acme", Tier: "paid", Admin: true, CreatedAt: t0}},
		&RegisterDataset{At: t0, Dataset: Dataset{ID: "d", Tenant: "acme", Name: "n", CID: "c", SHA256: "s", Size: 3, CreatedAt: t0, Job: "j"}},
		&DeleteDataset{At: t0, Tenant: "acme", ID: "d"},
		&SubmitJob{At: t0, IdempotencyKey: "k", Job: Job{ID: "j", Tenant: "acme", Type: "calibrate", Priority: "free", Params: []byte(`{"a":1}`), Timeout: Duration(time.Hour), Resources: Resources{GPUs: 1, GPUModel: "T4", GPUMemoryMB: 8},
			Image: "pwm/fetch:1", Network: NetworkBridge}},
		&AssignJob{At: t0, JobID: "j", Node: "n", Incarnation: "i", GPUs: []int{0, 1}, ExpiresAt: exp},
		&RenewLease{At: t0, JobID: "j", Token: 7, ExpiresAt: exp},
		&CompleteJob{At: t0, JobID: "j", Token: 7, State: StateSucceeded, Metrics: map[string]any{"psnr_db": 31.5},
			RunBundle: &BundleRef{CID: "c", SHA256: "s", Size: 9}, Outputs: map[string]string{"dataset": "d"},
			Error: &JobError{Code: "x", Message: "y"}, Dataset: &Dataset{ID: "d", Tenant: "acme"},
			Operator: &OperatorEntry{Key: "op", Ref: BundleRef{CID: "oc"}}},
		&CancelJob{At: t0, Tenant: "acme", JobID: "j"},
		&RequeueJob{At: t0, JobID: "j", Token: 7, Reason: "r"},
		&RegisterNode{At: t0, Node: Node{ID: "n", Region: "eu", State: NodeReady, Voter: true, GPUs: a100s(1), Slots: 2, Executors: []string{"docker"}, JobNetwork: true, Incarnation: "i", UpdatedAt: t0}},
		&SetNodeState{At: t0, ID: "n", State: NodeDown},
		&PutOperator{At: t0, Entry: OperatorEntry{Key: "op", Ref: BundleRef{CID: "oc", SHA256: "os", Size: 1}}},
		&AssignBatch{Assignments: []AssignJob{{Claim: true, At: t0, JobID: "j", Node: "n", Incarnation: "i", GPUs: []int{1}, ExpiresAt: exp}}},
		&RevokeKey{At: t0, ID: "key_1", Tenant: "acme"},
		&TouchKeys{At: t0, Used: map[string]time.Time{"key_1": exp}},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	seen := map[CommandType]bool{}
	for _, c := range allCommands() {
		t.Run(c.Type().String(), func(t *testing.T) {
			t.Parallel()
			b, err := Encode(c)
			if err != nil {
				t.Fatal(err)
			}
			if CommandType(b[0]) != c.Type() {
				t.Fatalf("type byte = %d, want %d", b[0], c.Type())
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, c)
			}
		})
		seen[c.Type()] = true
	}
	// Every numbered type up to the highest is covered and has a name.
	for ct := CmdCreateKey; ct <= CmdAssignBatch; ct++ {
		if !seen[ct] {
			t.Errorf("command type %d has no round-trip case", ct)
		}
		if strings.HasPrefix(ct.String(), "command(") {
			t.Errorf("command type %d has no name", ct)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrPayloadBytes},
		{"type zero", []byte{0, '{', '}'}, ErrUnknownCmd},
		{"type after last", []byte{byte(CmdTouchKeys) + 1, '{', '}'}, ErrUnknownCmd},
		{"type 255", []byte{255}, ErrUnknownCmd},
		{"bad json", []byte{byte(CmdSubmitJob), '{'}, ErrPayloadBytes},
		{"trailing data", []byte{byte(CmdCancelJob), '{', '}', 'x'}, ErrPayloadBytes},
		{"wrong field type", append([]byte{byte(CmdRenewLease)}, `{"token":"seven"}`...), ErrPayloadBytes},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Decode(tc.in)
			if !errors.Is(err, tc.want) || c != nil {
				t.Fatalf("Decode = %v, %v; want nil, %v", c, err, tc.want)
			}
		})
	}
}

func TestFSMPanicsOnUnknownCommand(t *testing.T) {
	t.Parallel()
	f := NewFSM()
	defer func() {
		if recover() == nil {
			t.Fatal("Apply of an unknown command type did not panic")
		}
		if f.LastIndex() != 0 {
			t.Fatalf("LastIndex = %d after a refused entry", f.LastIndex())
		}
	}()
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{200, '{', '}'}})
}

func TestFSMIgnoresNonCommandEntries(t *testing.T) {
	t.Parallel()
	f := NewFSM()
	if got := f.Apply(&raft.Log{Index: 1, Type: raft.LogNoop}); got != nil {
		t.Fatalf("Apply(noop) = %v", got)
	}
}
