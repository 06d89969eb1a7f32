package web_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/web"
)

func TestValidRequestID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"req_0123456789abcdef0123":                                true,
		"f47ac10b-58cc-4372-a567-0e02b2c3d479":                    true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": true,
		"a.b:c_d-e":                              true,
		strings.Repeat("x", web.MaxRequestIDLen): true,
		"":                                       false,
		strings.Repeat("x", web.MaxRequestIDLen+1): false,
		"two words":            false,
		`quote"d`:              false,
		"line\nbreak":          false,
		"tab\t":                false,
		"semi;colon":           false,
		"slash/path":           false,
		"ünïcode":              false,
		"{\"msg\":\"forged\"}": false,
		"req_\x00":             false,
		"%0a":                  false,
		"<script>":             false,
		"a=b":                  false,
		"a,b":                  false,
		"bearer pwm_secret":    false,
		"trace:" + strings.Repeat("0", web.MaxRequestIDLen-len("trace:")): true,
	} {
		if got := web.ValidRequestID(id); got != want {
			t.Errorf("ValidRequestID(%q) = %v, want %v", id, got, want)
		}
	}
}

var generatedID = regexp.MustCompile(`^req_[0-9a-f]{20}$`)

// logLines parses every line of buf as one JSON object.
func logLines(t *testing.T, buf string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// The middleware keeps a sane incoming ID, replaces any other with a new
// one, echoes it, hands it to the handler's context and names it on every
// line logged with that context, the access line among them.
func TestRequestsMiddleware(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		keep     bool
	}{
		{"none", "", false},
		{"good", "client-trace.1:abc", true},
		{"uuid", "f47ac10b-58cc-4372-a567-0e02b2c3d479", true},
		{"too long", strings.Repeat("a", web.MaxRequestIDLen+1), false},
		{"spaces", "a b", false},
		{"json", `x","msg":"forged`, false},
		{"newline", "a\nb", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var buf syncBuffer
			// The node's logger: every line logged with a request's
			// context names it.
			log := slog.New(web.ContextHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
			var seen string
			h := web.Requests(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen = web.RequestID(r.Context())
				log.WarnContext(r.Context(), "inside the handler")
				http.Error(w, "no", http.StatusTeapot)
			}))
			req := httptest.NewRequest("POST", "/jobs?x=1", nil)
			if c.in != "" {
				req.Header[web.RequestIDHeader] = []string{c.in}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			got := rec.Header().Get(web.RequestIDHeader)
			switch {
			case c.keep && got != c.in:
				t.Fatalf("X-Request-Id %q, want the client's %q", got, c.in)
			case !c.keep && !generatedID.MatchString(got):
				t.Fatalf("X-Request-Id %q for incoming %q, want a new req_ ID", got, c.in)
			case seen != got:
				t.Fatalf("handler's context has %q, answer says %q", seen, got)
			}
			lines := logLines(t, buf.String())
			if len(lines) != 2 {
				t.Fatalf("%d lines, want the handler's and the access line:\n%s", len(lines), buf.String())
			}
			for _, l := range lines {
				if l["request_id"] != got {
					t.Errorf("line %v: request_id, want %q", l, got)
				}
			}
			access := lines[1]
			for k, want := range map[string]any{"msg": "http request", "level": "INFO", "method": "POST", "path": "/jobs", "status": float64(http.StatusTeapot)} {
				if access[k] != want {
					t.Errorf("access line %s = %v, want %v", k, access[k], want)
				}
			}
			if _, ok := access["duration"]; !ok {
				t.Errorf("access line without duration: %v", access)
			}
		})
	}
}

// Nested (the node's around the API's, or the UI's in-process calls), a
// request keeps its first ID and is logged once; probes log at debug.
func TestRequestsNested(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var inner string
	h := web.Requests(log, web.Requests(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner = web.RequestID(r.Context())
	})))
	req := httptest.NewRequest("GET", "/health", nil)
	req.Header.Set(web.RequestIDHeader, "outer-1")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if inner != "outer-1" || rec.Header().Get(web.RequestIDHeader) != "outer-1" {
		t.Fatalf("inner %q, header %q; want outer-1", inner, rec.Header().Get(web.RequestIDHeader))
	}
	lines := logLines(t, buf.String())
	if len(lines) != 1 || lines[0]["level"] != "DEBUG" || lines[0]["request_id"] != "outer-1" {
		t.Fatalf("want one debug access line for a probe:\n%s", buf.String())
	}
}

// ContextHandler adds request_id only when the context has one, and once
// however often it wraps.
func TestContextHandler(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	h := web.ContextHandler(web.ContextHandler(slog.NewJSONHandler(&buf, nil)))
	log := slog.New(h).With("node_id", "n1")
	log.Info("no request")
	log.InfoContext(web.WithRequestID(t.Context(), "r-1"), "a request")
	lines := logLines(t, buf.String())
	if _, ok := lines[0]["request_id"]; ok {
		t.Errorf("line without a request has request_id: %v", lines[0])
	}
	if lines[1]["request_id"] != "r-1" || lines[1]["node_id"] != "n1" || strings.Count(buf.String(), "r-1") != 1 {
		t.Errorf("line of a request: %s", buf.String())
	}
}
