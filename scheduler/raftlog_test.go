package scheduler

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// lockedBuffer is a log sink safe for Raft's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines parses every line written so far as one JSON object.
func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	s := l.b.String()
	l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not one JSON object: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestRaftLoggerWritesSlog(t *testing.T) {
	t.Parallel()
	var buf lockedBuffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node_id", "n1")
	h := RaftLogger(l, "raft", "DEBUG") // agent.go passes slog's level names

	h.Trace("below the floor")
	h.Debug("a debug line", "peer", raft.ServerAddress("p1"), "term", uint64(3))
	h.Named("snapshot").With("path", "snap-1").Warn("a warning", "error", errors.New("disk full"))
	h.Error("odd", "k1", "v1", "dangling")
	h.Info("formatted", "what", hclog.Fmt("%d entries", 4))
	h.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[ERR] from a std logger")
	h.SetLevel(hclog.Error)
	h.Warn("now below the floor")
	if h.IsWarn() || !h.IsError() || h.Named("x").GetLevel() != hclog.Error {
		t.Error("SetLevel does not reach the level checks or the derived loggers")
	}

	got := buf.lines(t)
	want := []map[string]any{
		{"level": "DEBUG", "msg": "a debug line", "logger": "raft", "peer": "p1", "term": 3.0},
		{"level": "WARN", "msg": "a warning", "logger": "raft.snapshot", "path": "snap-1", "err": "disk full"},
		{"level": "ERROR", "msg": "odd", "k1": "v1", "extra": "dangling"},
		{"level": "INFO", "msg": "formatted", "what": "4 entries"},
		{"level": "ERROR", "msg": "from a std logger", "logger": "raft"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		if _, ok := got[i]["time"]; !ok || got[i]["node_id"] != "n1" {
			t.Errorf("line %d lacks time or the node's attributes: %v", i, got[i])
		}
		for k, v := range w {
			if got[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, got[i][k], v, got[i])
			}
		}
	}
}

// The handler's level filters too, and an unknown level is warn.
func TestRaftLoggerLevels(t *testing.T) {
	t.Parallel()
	var buf lockedBuffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	RaftLogger(l, "raft", "debug").Info("the handler drops it")
	h := RaftLogger(l, "raft", "")
	if h.GetLevel() != hclog.Warn || h.IsInfo() {
		t.Fatalf("level %v, want warn", h.GetLevel())
	}
	h.Warn("kept")
	if got := buf.lines(t); len(got) != 1 || got[0]["msg"] != "kept" {
		t.Fatalf("lines %v", got)
	}
}

// A real Raft member logs through the node's slog logger: every line one
// JSON object with time, level and msg, and logger=raft.
func TestRaftLogsThroughSlog(t *testing.T) {
	t.Parallel()
	var buf lockedBuffer
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	r, err := OpenRaft(RaftConfig{
		NodeID: "n1", Dir: t.TempDir(), Transport: trans, Bootstrap: true,
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		Logger:   slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		LogLevel: "info",
	}, NewFSM())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "leadership", r.IsLeader)
	if err := r.Shutdown(); err != nil {
		t.Fatal(err)
	}
	lines := buf.lines(t)
	if len(lines) == 0 {
		t.Fatal("Raft logged nothing at info")
	}
	for _, l := range lines {
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := l[k]; !ok {
				t.Errorf("line without %s: %v", k, l)
			}
		}
		if lg, _ := l["logger"].(string); !strings.HasPrefix(lg, "raft") {
			t.Errorf("line without logger=raft: %v", l)
		}
	}
}
