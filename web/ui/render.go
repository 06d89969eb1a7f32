package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// asset is one embedded static file.
type asset struct {
	body  []byte
	ctype string
	hash  string // the first 16 hex characters of its SHA-256
}

func loadStatic() (map[string]asset, error) {
	out := map[string]asset{}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		out[path.Base(p)] = asset{body: b, ctype: ct, hash: hex.EncodeToString(sum[:8])}
		return nil
	})
	return out, err
}

// serveStatic serves the UI's style sheet and script. They name nothing
// of the cluster, so they need no session; a URL with the file's hash
// (what pages link to) may be cached for good.
func (u *UI) serveStatic(w http.ResponseWriter, r *http.Request) {
	a, ok := u.static[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", `"`+a.hash+`"`)
	if r.URL.Query().Get("v") == a.hash {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// view is what every page template gets.
type view struct {
	Title string
	// Nav names the active navigation entry.
	Nav string
	// S is the signed-in session (nil on the sign-in page).
	S *sessionView
	// CSRF is the session's anti-forgery token, for forms and scripts.
	CSRF string
	// Flash is a success message, Error an error message.
	Flash, Error string
	// Data is the page's own.
	Data any
}

// sessionView is what pages show of a session.
type sessionView struct {
	Tenant  string
	Name    string
	Admin   bool
	Expires time.Time
}

func newView(s *session, title, nav string, data any) view {
	v := view{Title: title, Nav: nav, Data: data}
	if s != nil {
		v.S = &sessionView{Tenant: s.Tenant, Name: s.Name, Admin: s.Admin, Expires: time.Unix(s.Expires, 0).UTC()}
		v.CSRF = s.CSRF
	}
	return v
}

// render writes page name with status in answer to r.
func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	t, ok := u.pages[name]
	if !ok {
		u.log.ErrorContext(r.Context(), "ui: no such template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		u.log.ErrorContext(r.Context(), "ui: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorPage renders a page that says what went wrong (s may be nil).
func (u *UI) errorPage(w http.ResponseWriter, r *http.Request, s *session, status int, title, msg string) {
	u.render(w, r, status, "error", newView(s, title, "", struct{ Status int }{status}).withError(msg))
}

func (v view) withError(msg string) view { v.Error = msg; return v }

func (v view) withFlash(msg string) view { v.Flash = msg; return v }

// apiFailure shows an API refusal: a key that no longer works (revoked,
// expired) ends the session and goes to sign-in; anything else is an
// error page with the API's own message, rendered as text.
func (u *UI) apiFailure(w http.ResponseWriter, r *http.Request, s *session, err error) {
	e := asAPIError(err)
	switch e.Status {
	case http.StatusUnauthorized:
		u.toLogin(w, r, r.URL.RequestURI(), true)
		return
	case http.StatusNotFound:
		u.errorPage(w, r, s, http.StatusNotFound, "Not found", e.Message)
		return
	}
	if e.Status >= 500 && e.Code == "internal" {
		u.log.ErrorContext(r.Context(), "ui: API call failed", "path", r.URL.Path, "err", err)
	}
	u.errorPage(w, r, s, e.Status, http.StatusText(e.Status), e.Message)
}

// parsePages parses the layout with each page into its own template set.
func parsePages(static map[string]asset) (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"asset": func(name string) (string, error) {
			a, ok := static[name]
			if !ok {
				return "", fmt.Errorf("no static file %q", name)
			}
			return "/ui/static/" + name + "?v=" + a.hash, nil
		},
		"badge":     badgeClass,
		"terminal":  terminal,
		"time":      fmtTime,
		"isotime":   isoTime,
		"bytes":     fmtBytes,
		"num":       fmtNum,
		"metric":    fmtMetric,
		"duration":  fmtDuration,
		"short":     short,
		"stateName": func(s string) string { return strings.ReplaceAll(s, "_", " ") },
		"pct":       func(f float64) string { return strconv.FormatFloat(math.Round(f*100), 'f', 0, 64) },
		"quota":     fmtQuota,
		"quotaIn":   fmtQuotaInput,
		"money":     func(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) },
		"deref": func(p *float64) float64 {
			if p == nil {
				return 0
			}
			return *p
		},
		"deref64": func(p *int64) int64 {
			if p == nil {
				return 0
			}
			return *p
		},
	}
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", f)
		if err != nil {
			return nil, fmt.Errorf("ui: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// Job states and their badges.
var badges = map[string]string{
	"queued": "queued", "running": "running", "succeeded": "ok", "failed": "bad", "cancelled": "off", "timed_out": "warn",
}

func badgeClass(state string) string {
	if c, ok := badges[state]; ok {
		return "badge badge-" + c
	}
	return "badge"
}

func terminal(state string) bool {
	switch state {
	case "succeeded", "failed", "cancelled", "timed_out":
		return true
	}
	return false
}

// fmtTime writes a time (a time.Time or *time.Time) in UTC to the second;
// "" for none.
func fmtTime(v any) string {
	t, ok := asTime(v)
	if !ok {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func isoTime(v any) string {
	t, ok := asTime(v)
	if !ok {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func asTime(v any) (time.Time, bool) {
	switch t := v.(type) {
	case time.Time:
		return t, !t.IsZero()
	case *time.Time:
		if t == nil {
			return time.Time{}, false
		}
		return *t, !t.IsZero()
	}
	return time.Time{}, false
}

// fmtDuration is the time from start to end (or to now, for a running
// job): "1m 05s".
func fmtDuration(start, end *time.Time) string {
	if start == nil {
		return ""
	}
	e := time.Now()
	if end != nil {
		e = *end
	}
	d := e.Sub(*start).Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	if d < time.Hour {
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
}

// fmtBytes writes a size in decimal units: "1.5 MB".
func fmtBytes(v any) string {
	var n float64
	switch x := v.(type) {
	case int64:
		n = float64(x)
	case int:
		n = float64(x)
	case float64:
		n = x
	case *int64:
		if x == nil {
			return "unlimited"
		}
		n = float64(*x)
	case *float64:
		if x == nil {
			return "unlimited"
		}
		n = *x
	default:
		return fmt.Sprint(v)
	}
	units := []string{"B", "kB", "MB", "GB", "TB"}
	i := 0
	for n >= 1000 && i < len(units)-1 {
		n /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

// fmtNum writes a number without needless digits.
func fmtNum(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', 6, 64)
}

// fmtMetric writes a metric value of any JSON shape.
func fmtMetric(v any) string {
	switch x := v.(type) {
	case float64:
		return fmtNum(x)
	case string:
		return x
	case nil:
		return "—"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// fmtQuota writes an effective quota as its form field takes it (nil:
// unlimited).
func fmtQuota(v *float64) string {
	if v == nil {
		return "unlimited"
	}
	return fmtNum(*v)
}

// fmtQuotaInput is an override's value for its form field.
func fmtQuotaInput(overrides map[string]float64, name string) string {
	v, ok := overrides[name]
	if !ok {
		return ""
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// short cuts a long hex string for a table cell.
func short(s string) string {
	if len(s) <= 16 {
		return s
	}
	return s[:12] + "…"
}
