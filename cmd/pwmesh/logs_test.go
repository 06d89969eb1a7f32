package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestLibp2pLevel(t *testing.T) {
	t.Parallel()
	for agent, want := range map[slog.Level]slog.Level{
		slog.LevelDebug: slog.LevelDebug, // --log-level debug shows libp2p's debug too
		slog.LevelInfo:  slog.LevelWarn,  // its info is noise
		slog.LevelWarn:  slog.LevelWarn,
		slog.LevelError: slog.LevelError,
	} {
		if got := libp2pLevel(agent, "")("swarm2"); got != want {
			t.Errorf("agent at %v: libp2p at %v, want %v", agent, got, want)
		}
	}
}

// libp2p's records (as gologshim hands them: a handler given logger=<the
// subsystem>) go to the current target in its shape, above the level, and
// nowhere without a target.
func TestLibp2pHandler(t *testing.T) {
	t.Parallel()
	var sink libp2pSink
	// gologshim's logger for a subsystem, created before any agent runs.
	l := slog.New((&libp2pHandler{sink: &sink}).WithAttrs([]slog.Attr{slog.String("logger", "swarm2")})).With("peer", "p1")
	l.Error("before any agent") // dropped

	var first, second bytes.Buffer
	target := func(buf *bytes.Buffer, level slog.Level) *libp2pTarget {
		h := slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})
		return &libp2pTarget{h: slog.New(h).With("node_id", "n1").Handler(), level: libp2pLevel(level, "")}
	}
	sink.target.Store(target(&first, slog.LevelInfo))
	l.Info("chatter")
	l.Warn("dial failed", "err", "refused")
	sink.target.Store(target(&second, slog.LevelDebug))
	l.Debug("now at debug")
	sink.target.Store(nil)
	l.Error("after the agent") // dropped

	var got map[string]any
	if err := json.Unmarshal(first.Bytes(), &got); err != nil {
		t.Fatalf("first target: %q: %v", first.String(), err)
	}
	for k, want := range map[string]any{"level": "WARN", "msg": "dial failed", "logger": "libp2p.swarm2", "peer": "p1", "node_id": "n1", "err": "refused"} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v (%s)", k, got[k], want, first.String())
		}
	}
	if _, ok := got["time"]; !ok {
		t.Errorf("no time: %s", first.String())
	}
	if s := second.String(); strings.Count(s, "\n") != 1 || !strings.Contains(s, `"msg":"now at debug","node_id":"n1","logger":"libp2p.swarm2"`) {
		t.Errorf("second target: %q", s)
	}
}
