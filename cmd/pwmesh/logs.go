package main

import (
	"context"
	"io"
	"log"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/gologshim"
)

// The agent's logs are one JSON object a line on stderr, whatever wrote
// them (docs/operations.md, "Logs"). Everything of pwmesh's own, Raft's and
// memberlist's goes through the node's injected logger. Two sources are
// process-wide instead, and are routed here, once per process, to the
// logger of the agent that runs in it:
//
//   - libp2p (and gossipsub) log through gologshim, whose handler is one
//     per process and is taken by each libp2p logger on its first use;
//   - Go's log package and slog.Default, which libraries may write to.
//
// A process runs one agent; where tests run several agents in one process
// (in-process runAgent), these sources land in the logger of the agent
// started last. Nodes built by node.New alone (node/nodetest) keep
// gologshim's own default: errors only, on stderr.

// libp2pLogs is the process's sink of libp2p's records.
var libp2pLogs libp2pSink

// routeLibp2p hands gologshim the sink, once per process.
var routeLibp2p sync.Once

// libp2pTarget is where libp2p's records go now, and from which level.
type libp2pTarget struct {
	h slog.Handler
	// level returns the least level logged for a libp2p subsystem.
	level func(system string) slog.Level
}

// libp2pSink is the handler gologshim holds for the whole process; it
// forwards to the current target, or drops everything without one.
type libp2pSink struct{ target atomic.Pointer[libp2pTarget] }

// libp2pLevel is the least level of libp2p's own records for an agent
// at level: libp2p's info is noise to an operator, so below warn only
// --log-level debug shows its debug and info. GOLOG_LOG_LEVEL (libp2p's
// own variable, e.g. "warn,swarm2=debug") sets it per subsystem instead.
func libp2pLevel(level slog.Level, golog string) func(system string) slog.Level {
	if golog != "" {
		c := gologshim.ConfigFromEnv()
		return c.LevelForSystem
	}
	l := max(level, slog.LevelWarn)
	if level <= slog.LevelDebug {
		l = level
	}
	return func(string) slog.Level { return l }
}

// processLogs routes the process-wide logs to one agent's logger.
type processLogs struct {
	level slog.Level
	t     atomic.Pointer[libp2pTarget] // the target this agent set
	// What routeProcessLogs replaced, for Close.
	prevDefault *slog.Logger
	prevOut     io.Writer
	prevFlags   int
}

// routeProcessLogs sends the process-wide logs to l (which already holds
// the agent's level) until Close.
func routeProcessLogs(l *slog.Logger, level slog.Level) *processLogs {
	routeLibp2p.Do(func() { gologshim.SetDefaultHandler(&libp2pHandler{sink: &libp2pLogs}) })
	// Go's log package goes to slog.Default's handler at info once
	// slog.SetDefault is given a handler of its own; setting the old
	// default back does not undo that, so its output is kept too.
	p := &processLogs{level: level, prevDefault: slog.Default(), prevOut: log.Writer(), prevFlags: log.Flags()}
	p.Use(l)
	return p
}

// Use sends the process-wide logs to l from now on (the agent's logger
// once it knows its node ID).
func (p *processLogs) Use(l *slog.Logger) {
	t := &libp2pTarget{h: l.Handler(), level: libp2pLevel(p.level, os.Getenv("GOLOG_LOG_LEVEL"))}
	p.t.Store(t)
	libp2pLogs.target.Store(t)
	slog.SetDefault(l.With("logger", "go"))
}

// Close stops the routing: libp2p's records are dropped, Go's log package
// and slog.Default are as they were.
func (p *processLogs) Close() {
	libp2pLogs.target.CompareAndSwap(p.t.Load(), nil)
	slog.SetDefault(p.prevDefault)
	log.SetOutput(p.prevOut)
	log.SetFlags(p.prevFlags)
}

// libp2pHandler is one libp2p logger's handler: the sink and the
// attributes and groups the logger added (gologshim adds logger=<the
// subsystem>, which becomes logger=libp2p.<subsystem>).
type libp2pHandler struct {
	sink   *libp2pSink
	system string
	ops    []func(slog.Handler) slog.Handler
	// built caches the target's handler with ops applied.
	built atomic.Pointer[builtHandler]
}

type builtHandler struct {
	t *libp2pTarget
	h slog.Handler
}

func (h *libp2pHandler) handler(t *libp2pTarget) slog.Handler {
	if b := h.built.Load(); b != nil && b.t == t {
		return b.h
	}
	out := t.h
	for _, op := range h.ops {
		out = op(out)
	}
	h.built.Store(&builtHandler{t: t, h: out})
	return out
}

func (h *libp2pHandler) Enabled(ctx context.Context, l slog.Level) bool {
	t := h.sink.target.Load()
	return t != nil && l >= t.level(h.system) && t.h.Enabled(ctx, l)
}

func (h *libp2pHandler) Handle(ctx context.Context, r slog.Record) error {
	t := h.sink.target.Load()
	if t == nil || r.Level < t.level(h.system) {
		return nil
	}
	return h.handler(t).Handle(ctx, r)
}

func (h *libp2pHandler) with(system string, op func(slog.Handler) slog.Handler) *libp2pHandler {
	ops := append(append([]func(slog.Handler) slog.Handler(nil), h.ops...), op)
	return &libp2pHandler{sink: h.sink, system: system, ops: ops}
}

func (h *libp2pHandler) WithAttrs(as []slog.Attr) slog.Handler {
	system := h.system
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		if a.Key == "logger" && system == "" && len(h.ops) == 0 {
			system = a.Value.String()
			a = slog.String("logger", "libp2p."+system)
		}
		out[i] = a
	}
	return h.with(system, func(d slog.Handler) slog.Handler { return d.WithAttrs(out) })
}

func (h *libp2pHandler) WithGroup(name string) slog.Handler {
	return h.with(h.system, func(d slog.Handler) slog.Handler { return d.WithGroup(name) })
}
