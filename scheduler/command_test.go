package scheduler

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
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
			Operator: &OperatorEntry{Key: "op", Ref: BundleRef{CID: "oc"}, Tenant: "acme"}},
		&CancelJob{At: t0, Tenant: "acme", JobID: "j"},
		&RequeueJob{At: t0, JobID: "j", Token: 7, Reason: "r"},
		&RegisterNode{At: t0, Node: Node{ID: "n", Region: "eu", State: NodeReady, Voter: true, GPUs: a100s(1), Slots: 2, Executors: []string{"docker"}, JobNetwork: true, Incarnation: "i", UpdatedAt: t0}},
		&SetNodeState{At: t0, ID: "n", State: NodeDown},
		&PutOperator{At: t0, Entry: OperatorEntry{Key: "op", Ref: BundleRef{CID: "oc", SHA256: "os", Size: 1}}},
		&AssignBatch{Assignments: []AssignJob{{Claim: true, At: t0, JobID: "j", Node: "n", Incarnation: "i", GPUs: []int{1}, ExpiresAt: exp}}},
		&RevokeKey{At: t0, ID: "key_1", Tenant: "acme"},
		&TouchKeys{At: t0, Used: map[string]time.Time{"key_1": exp}},
		&UpdateGPUs{At: t0, Node: "n", GPUs: a100s(1)},
		&BlobStored{At: t0, CID: "c", Size: 3, Kind: BlobBundle, Node: "n"},
		&BlobDropped{At: t0, CID: "c", Node: "n", Reason: "corrupt"},
		&BlobMirrored{At: t0, CID: "c", Gone: true},
		&ExpireBundles{At: t0, Jobs: []string{"j"}},
		&ForgetBlobs{At: t0, CIDs: []string{"c"}},
		&PutTenantKeys{At: t0, Tenant: "acme", PrevGen: 2, Keys: []SealedKey{{Version: 1, Master: "m", Sealed: []byte{1, 2}}}},
		&SetClusterConfig{At: t0, Config: ClusterConfig{Replicas: 3}},
		&PruneJobs{At: t0, JobsBefore: t0.Add(-time.Hour), IdempotencyBefore: t0.Add(-time.Minute)},
		&SetTenant{At: t0, Tenant: "acme", Tier: ptrTo("paid"), Pool: ptrTo("acme"), PoolOnly: ptrTo(true),
			Quotas: map[string]*float64{QuotaGPUMinutes: ptrTo(0.5), QuotaStorage: nil}},
		&MeterCalls{At: t0, Node: "n", Incarnation: "i", Seq: 3, Calls: map[string]int64{"acme": 2}},
		&DrainNode{At: t0, ID: "n", Undo: true},
		&ScaleStatus{At: t0, Status: ScalerStatus{Mode: ScalerExec, Min: 0, Max: 4, Idle: Duration(time.Minute), Desired: 2, Reason: "r"}},
		&ScaleBegin{At: t0, Action: ScaleAction{Add: 2, Pool: "shared", GPUClass: "A100", GPUs: 1, Remove: []string{"w"}}, Grace: Duration(time.Minute)},
		&ScaleEnd{At: t0, ID: 7, Error: "boom", Interrupted: true},
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
	// Every registered type is covered.
	for _, ct := range CommandTypes() {
		if !seen[ct] {
			t.Errorf("command type %s (%d) has no round-trip case", ct, ct)
		}
	}
}

// Every registered command has a name, a decoder of its own type, an
// apply, a result type and an authority; every command type constant is
// registered. A forgotten entry fails here, not on every replica.
func TestRegistryCoversEveryCommand(t *testing.T) {
	t.Parallel()
	names := map[string]CommandType{}
	for _, ct := range CommandTypes() {
		e := commands[ct]
		if strings.HasPrefix(ct.String(), "command(") || e.name == "" {
			t.Errorf("command type %d has no name", ct)
		}
		if prev, dup := names[e.name]; dup {
			t.Errorf("types %d and %d share the name %q", prev, ct, e.name)
		}
		names[e.name] = ct
		if e.new == nil || e.new().Type() != ct {
			t.Errorf("%s: new() does not make a %s", ct, ct)
		}
		if e.apply == nil || e.result == nil || e.result() == nil {
			t.Errorf("%s: no apply or result type", ct)
		}
		switch e.auth {
		case AuthLeader, AuthAdmin:
		case AuthTenant, AuthNode, AuthKeyOrNode:
			if e.allow == nil {
				t.Errorf("%s: authority %s without a check", ct, e.auth)
			}
		default:
			t.Errorf("%s: no authority class", ct)
		}
		if strings.HasPrefix(e.auth.String(), "authority(") {
			t.Errorf("%s: authority %d has no name", ct, e.auth)
		}
	}
	// Every constant this package declares is in the table (a constant
	// added without an entry fails here).
	for _, ct := range []CommandType{CmdCreateKey, CmdRegisterDataset, CmdDeleteDataset, CmdSubmitJob, CmdAssignJob,
		CmdRenewLease, CmdCompleteJob, CmdCancelJob, CmdRequeueJob, CmdRegisterNode, CmdSetNodeState, CmdPutOperator,
		CmdAssignBatch, CmdBlobStored, CmdBlobDropped, CmdBlobMirrored, CmdExpireBundles, CmdForgetBlobs,
		CmdPutTenantKeys, CmdSetClusterConfig, CmdUpdateGPUs, CmdRevokeKey, CmdTouchKeys, CmdPruneJobs} {
		if _, ok := commands[ct]; !ok {
			t.Errorf("command type %d is not registered", ct)
		}
	}
	// Numbers are dense below the ignorable bit: a gap is a type that was
	// dropped, or one whose entry was forgotten.
	for ct := CmdCreateKey; ct < IgnorableFlag; ct++ {
		if _, ok := commands[ct]; !ok {
			if _, later := commands[ct+1]; later {
				t.Errorf("command type %d is missing between registered types", ct)
			}
		}
	}
}

// Every refused command of every type comes back without a value, so that
// a forwarded refusal and a local one look alike.
func TestApplyResultTypesMatchTheRegistry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scenario(h)
	for _, c := range allCommands() {
		v, err := h.apply(c)
		if err != nil {
			if v != nil {
				t.Errorf("%s: refused with a value %#v", c.Type(), v)
			}
			continue
		}
		want := reflect.TypeOf(NewResult(c.Type())).Elem()
		if reflect.TypeOf(v) != want {
			t.Errorf("%s: Apply returned %T, the registry says %s", c.Type(), v, want)
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
		{"type after last", []byte{byte(slices.Max(CommandTypes())) + 1, '{', '}'}, ErrUnknownCmd},
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
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{100, '{', '}'}})
}

// An unknown command that carries the ignorable bit is skipped: the state
// is unchanged, the index moves on, nothing panics.
func TestFSMSkipsUnknownIgnorableCommand(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.base()
	before := snapshotBytes(t, h.f)
	res := h.f.Apply(&raft.Log{Index: h.idx + 1, Type: raft.LogCommand, Data: []byte{byte(IgnorableFlag | 100), '{', '}'}}).(ApplyResult)
	if !errors.Is(res.Err, ErrUnknownCmd) || res.Value != nil {
		t.Fatalf("ignorable entry: %+v", res)
	}
	if h.f.LastIndex() != h.idx+1 {
		t.Fatalf("LastIndex = %d, want %d", h.f.LastIndex(), h.idx+1)
	}
	if !bytes.Equal(snapshotBytes(t, h.f), before) {
		t.Fatal("an ignored entry changed the state")
	}
	for _, ct := range CommandTypes() {
		if ct.Ignorable() {
			t.Errorf("%s carries the ignorable bit: it changes agreed state", ct)
		}
	}
}

func TestFSMIgnoresNonCommandEntries(t *testing.T) {
	t.Parallel()
	f := NewFSM()
	if got := f.Apply(&raft.Log{Index: 1, Type: raft.LogNoop}); got != nil {
		t.Fatalf("Apply(noop) = %v", got)
	}
}

func ptrTo[T any](v T) *T { return &v }
