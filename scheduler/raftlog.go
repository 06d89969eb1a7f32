package scheduler

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// RaftLogger returns the hclog.Logger that Raft, its snapshot store and
// its transport write through: every record goes to l (the node's own
// logger, so the same JSON line as the rest of the node) with the
// attribute logger=name ("raft", "raft-net"; a Named logger adds
// ".sub"). level is Raft's least level, "trace", "debug", "info", "warn"
// or "error" in any case (anything else: warn); l's handler filters too.
// hclog's levels map to slog's: trace to debug-4, debug, info, warn and
// error to theirs. An error argument keyed "error" is logged as "err", the
// key the rest of pwmesh uses.
func RaftLogger(l *slog.Logger, name, level string) hclog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	lv := hclog.LevelFromString(level)
	if lv == hclog.NoLevel {
		lv = hclog.Warn
	}
	h := &hclogSlog{base: l, name: name, level: new(atomic.Int32)}
	h.level.Store(int32(lv))
	h.log = h.build()
	return h
}

// hclogSlog is an hclog.Logger that writes through an slog.Logger.
type hclogSlog struct {
	base    *slog.Logger
	name    string
	implied []any
	// level is shared with the loggers derived by With and Named, as
	// hclog's own are.
	level *atomic.Int32
	log   *slog.Logger // base with name and implied arguments
}

func (h *hclogSlog) build() *slog.Logger {
	l := h.base
	if h.name != "" {
		l = l.With("logger", h.name)
	}
	if len(h.implied) > 0 {
		l = l.With(hclogArgs(h.implied)...)
	}
	return l
}

func (h *hclogSlog) derive(name string, implied []any) *hclogSlog {
	d := &hclogSlog{base: h.base, name: name, implied: implied, level: h.level}
	d.log = d.build()
	return d
}

// slogLevel maps an hclog level to slog's.
func slogLevel(l hclog.Level) slog.Level {
	switch {
	case l <= hclog.Trace:
		return slog.LevelDebug - 4
	case l == hclog.Debug:
		return slog.LevelDebug
	case l == hclog.Info:
		return slog.LevelInfo
	case l == hclog.Warn:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func (h *hclogSlog) enabled(l hclog.Level) bool {
	floor := hclog.Level(h.level.Load())
	if l == hclog.NoLevel || l == hclog.Off || floor == hclog.Off || l < floor {
		return false
	}
	return h.log.Enabled(context.Background(), slogLevel(l))
}

func (h *hclogSlog) Log(l hclog.Level, msg string, args ...any) {
	if l == hclog.NoLevel {
		l = hclog.Info
	}
	if !h.enabled(l) {
		return
	}
	h.log.Log(context.Background(), slogLevel(l), msg, hclogArgs(args)...)
}

// hclogArgs turns hclog's key/value arguments into slog's: keys become
// strings, an odd value out is kept under "extra", hclog.Format is
// formatted, errors keyed "error" go under "err", and a value that says
// itself (fmt.Stringer, such as Raft's own state) is its String.
func hclogArgs(args []any) []any {
	out := make([]any, 0, len(args)+1)
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			out = append(out, "extra", hclogValue(args[i]))
			break
		}
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		v := hclogValue(args[i+1])
		if _, isErr := v.(error); isErr && key == "error" {
			key = "err"
		}
		out = append(out, key, v)
	}
	return out
}

func hclogValue(v any) any {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		return fmt.Sprintf(fmt.Sprint(v[0]), v[1:]...)
	case hclog.Hex:
		return fmt.Sprintf("0x%x", int(v))
	case hclog.Octal:
		return fmt.Sprintf("0%o", int(v))
	case hclog.Binary:
		return fmt.Sprintf("0b%b", int(v))
	case hclog.Quote:
		return string(v)
	case error, json.Marshaler, encoding.TextMarshaler:
		return v
	case fmt.Stringer:
		return fmt.Sprint(v) // as v.String(), and safe on a nil pointer
	}
	return v
}

func (h *hclogSlog) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogSlog) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogSlog) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogSlog) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogSlog) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogSlog) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hclogSlog) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hclogSlog) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hclogSlog) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hclogSlog) IsError() bool { return h.enabled(hclog.Error) }

func (h *hclogSlog) ImpliedArgs() []any { return h.implied }

func (h *hclogSlog) With(args ...any) hclog.Logger {
	return h.derive(h.name, append(append([]any(nil), h.implied...), args...))
}

func (h *hclogSlog) Name() string { return h.name }

func (h *hclogSlog) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return h.derive(name, h.implied)
}

func (h *hclogSlog) ResetNamed(name string) hclog.Logger { return h.derive(name, h.implied) }

func (h *hclogSlog) SetLevel(l hclog.Level) { h.level.Store(int32(l)) }

func (h *hclogSlog) GetLevel() hclog.Level { return hclog.Level(h.level.Load()) }

func (h *hclogSlog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer whose lines become records: at
// opts.ForceLevel when set, else (opts.InferLevels) at the level a
// "[DEBUG]"-style prefix names, else at info.
func (h *hclogSlog) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return hclogWriter{h: h, opts: *opts}
}

type hclogWriter struct {
	h    *hclogSlog
	opts hclog.StandardLoggerOptions
}

var hclogPrefixes = []struct {
	prefix string
	level  hclog.Level
}{
	{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info},
	{"[WARN]", hclog.Warn}, {"[ERROR]", hclog.Error}, {"[ERR]", hclog.Error},
}

func (w hclogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		s, level := strings.TrimSpace(string(line)), hclog.Info
		if w.opts.ForceLevel != hclog.NoLevel {
			level = w.opts.ForceLevel
		} else if w.opts.InferLevels || w.opts.InferLevelsWithTimestamp {
			for _, pl := range hclogPrefixes {
				if i := strings.Index(s, pl.prefix); i >= 0 && (i == 0 || w.opts.InferLevelsWithTimestamp) {
					s, level = strings.TrimSpace(s[i+len(pl.prefix):]), pl.level
					break
				}
			}
		}
		if s != "" {
			w.h.Log(level, s)
		}
	}
	return len(p), nil
}
