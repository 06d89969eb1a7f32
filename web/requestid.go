package web

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// RequestIDHeader carries a request's ID: a client may send one, and every
// answer names the ID its request was logged under.
const RequestIDHeader = "X-Request-Id"

// MaxRequestIDLen is the longest request ID taken from a client.
const MaxRequestIDLen = 128

// ValidRequestID reports whether id may be used as a request ID as a
// client sent it: 1 to MaxRequestIDLen characters of A-Z, a-z, 0-9 and
// '-', '_', '.', ':' (UUIDs, W3C trace IDs and most tracers' IDs pass;
// spaces, quotes and control characters, which could forge or break a log
// line, do not).
func ValidRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// NewRequestID returns a fresh request ID: "req_" and 20 random hex digits.
func NewRequestID() string { return randomID("req_") }

type requestKey struct{}

// requestInfo is what the access log line of one request says beyond the
// request itself; handlers fill it in as they learn it (the route, the
// caller). The UI's in-process calls to the API share their page's.
type requestInfo struct {
	id string

	mu      sync.Mutex
	route   string
	tenant  string
	keyID   string
	keyName string
}

// WithRequestID returns ctx carrying the request ID id: every log line
// written with ctx through a logger of ContextHandler names it as
// request_id, and a write forwarded to the leader carries it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestKey{}, &requestInfo{id: id})
}

// RequestID returns the request ID in ctx, "" when none.
func RequestID(ctx context.Context) string {
	if ri := requestOf(ctx); ri != nil {
		return ri.id
	}
	return ""
}

func requestOf(ctx context.Context) *requestInfo {
	ri, _ := ctx.Value(requestKey{}).(*requestInfo)
	return ri
}

// noteRoute records the route pattern that served the request.
func noteRoute(ctx context.Context, route string) {
	if ri := requestOf(ctx); ri != nil {
		ri.mu.Lock()
		if ri.route == "" {
			ri.route = route
		}
		ri.mu.Unlock()
	}
}

// noteCaller records whom the request's key speaks for: its tenant, ID and
// name, never the secret.
func noteCaller(ctx context.Context, c *caller) {
	if ri := requestOf(ctx); ri != nil && c != nil {
		ri.mu.Lock()
		ri.tenant, ri.keyID, ri.keyName = c.key.Tenant, c.key.ID, c.key.Name
		ri.mu.Unlock()
	}
}

// ContextHandler wraps h so that a record logged with a context that
// carries a request ID (WithRequestID) gets it as the attribute
// request_id. Wrapping a handler that already is one returns it as is.
func ContextHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(contextHandler); ok {
		return h
	}
	return contextHandler{h}
}

type contextHandler struct{ h slog.Handler }

func (c contextHandler) Enabled(ctx context.Context, l slog.Level) bool { return c.h.Enabled(ctx, l) }

func (c contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return c.h.Handle(ctx, r)
}

func (c contextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return contextHandler{c.h.WithAttrs(as)}
}

func (c contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{c.h.WithGroup(name)}
}

// Requests gives every request an ID and logs it once it is answered.
//
// The ID is the request's X-Request-Id when ValidRequestID accepts it,
// else a new one (NewRequestID). It is echoed in the answer's
// X-Request-Id, and the request's context carries it (WithRequestID), so
// that every line logged with that context through log names it as
// request_id. The access line ("http request") names the method, path,
// route pattern, status, duration and, once the request authenticated,
// the tenant and the key's ID and name (never the key). It is logged at
// info, at debug for probes and scrapes (GET /health, GET /metrics) and
// the UI's static files.
//
// A request that already has an ID in its context (an outer Requests, or
// the web UI's in-process calls to the API) keeps it and is logged once,
// by the outermost.
func Requests(log *slog.Logger, next http.Handler) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = slog.New(ContextHandler(log.Handler()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := RequestID(r.Context()); id != "" {
			w.Header().Set(RequestIDHeader, id)
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		id := r.Header.Get(RequestIDHeader)
		if !ValidRequestID(id) {
			id = NewRequestID()
		}
		ctx := WithRequestID(r.Context(), id)
		ri := requestOf(ctx)
		w.Header().Set(RequestIDHeader, id)
		rec := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(ctx))

		level := slog.LevelInfo
		if quietPath(r) {
			level = slog.LevelDebug
		}
		if !log.Enabled(ctx, level) {
			return
		}
		attrs := make([]slog.Attr, 0, 9)
		attrs = append(attrs,
			slog.String("method", methodLabel(r.Method)),
			slog.String("path", truncate(r.URL.Path, 256)),
			slog.Int("status", rec.code()),
			slog.Duration("duration", time.Since(start)))
		ri.mu.Lock()
		if ri.route != "" {
			attrs = append(attrs, slog.String("route", ri.route))
		}
		if ri.tenant != "" {
			attrs = append(attrs, slog.String("tenant", ri.tenant))
		}
		if ri.keyID != "" {
			attrs = append(attrs, slog.String("key_id", ri.keyID))
		}
		if ri.keyName != "" {
			attrs = append(attrs, slog.String("key_name", ri.keyName))
		}
		ri.mu.Unlock()
		log.LogAttrs(ctx, level, "http request", attrs...)
	})
}

// quietPath reports a request logged at debug only: health probes,
// metric scrapes and the UI's static files come every few seconds and say
// nothing.
func quietPath(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := r.URL.Path
	return p == "/health" || p == "/metrics" || strings.HasPrefix(p, "/ui/static/")
}
