package node

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/scheduler/schedulertest"
	"github.com/pwmesh/pwmesh/web"
)

type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A write forwarded to the leader carries its API request's ID, and the
// leader's lines about it name it; an ID that is not a sane token is
// dropped on the leader.
func TestForwardCarriesTheRequestID(t *testing.T) {
	t.Parallel()
	var logs lockedLog
	log := slog.New(web.ContextHandler(slog.NewJSONHandler(&logs, nil)))
	r := schedulertest.NewRaft(t)
	fw := &forwarder{raft: follower{addr: "leader"}, net: loopback{h: serveApply(r, r.FSM(), scheduler.SystemClock{}, log)}}
	ctx := web.WithRequestID(withAdmin(t, r), "req-fwd-1")
	key := scheduler.APIKey{ID: "key_1", Hash: "h1", Tenant: "acme", Tier: "paid"}
	if _, err := fw.Apply(ctx, &scheduler.CreateKey{At: time.Now(), Key: key}); err != nil {
		t.Fatal(err)
	}
	var line struct {
		Msg       string `json:"msg"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(logs.String())), &line); err != nil ||
		line.Msg != "API key created" || line.RequestID != "req-fwd-1" {
		t.Fatalf("leader's audit line %q (%v): want request_id req-fwd-1", logs.String(), err)
	}

	// A peer's forged ID never reaches the leader's log.
	before := logs.String()
	b, err := scheduler.Encode(&scheduler.CreateKey{At: time.Now(), Key: scheduler.APIKey{ID: "key_2", Hash: "h2", Tenant: "acme", Tier: "paid"}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(applyRequest{Command: b, Caller: adminSecret, RequestID: "bad\"id\nx"})
	resp, err := serveApply(r, r.FSM(), scheduler.SystemClock{}, log)(context.Background(), "peer", req)
	var reply applyReply
	if err != nil || json.Unmarshal(resp, &reply) != nil || reply.Error != nil {
		t.Fatalf("forwarded write with a bad request ID: %s, %v", resp, err)
	}
	if after := strings.TrimPrefix(logs.String(), before); strings.Contains(after, "request_id") || !strings.Contains(after, "API key created") {
		t.Fatalf("leader's line for a bad request ID: %q", after)
	}
}
