package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/pwmesh/pwmesh/web/client"
)

// printJSON writes v as indented JSON, for scripts.
func (a *app) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(a.stdout, "%s\n", b)
	return err
}

// table returns a tabwriter on stdout; the caller flushes it.
func (a *app) table() *tabwriter.Writer {
	return tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
}

// fmtTime formats t in UTC to the second; the zero time is "-".
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// fmtTimePtr is fmtTime of an optional time.
func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return fmtTime(*t)
}

// orDash returns s, or "-" when s is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanBytes formats n bytes in IEC units: "512 B", "1.5 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressMode is the --progress flag: when uploads and downloads draw a
// progress bar on stderr.
type progressMode string

const (
	progressAuto   progressMode = "auto"   // when stderr is a terminal
	progressAlways progressMode = "always" // also into a file or a pipe
	progressNever  progressMode = "never"
)

func (m *progressMode) String() string { return string(*m) }
func (m *progressMode) Type() string   { return "mode" }

func (m *progressMode) Set(v string) error {
	switch progressMode(v) {
	case progressAuto, progressAlways, progressNever:
		*m = progressMode(v)
		return nil
	}
	return fmt.Errorf("want auto, always or never")
}

// progress draws a transfer's progress bar on stderr (see progressMode).
type progress struct {
	w    io.Writer
	desc string
	bar  *progressbar.ProgressBar
}

// newProgress returns a progress for a transfer described by desc; nil when
// --progress says to draw none. Its methods accept a nil receiver.
func (a *app) newProgress(desc string) *progress {
	if a.progress == progressNever || (a.progress != progressAlways && !isTerminal(a.stderr)) {
		return nil
	}
	return &progress{w: a.stderr, desc: desc}
}

// fn returns the client.Progress to hand to a transfer, nil for no bar.
func (p *progress) fn() client.Progress {
	if p == nil {
		return nil
	}
	return p.update
}

func (p *progress) update(done, total int64) {
	if p.bar == nil {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(p.desc),
			progressbar.OptionShowBytes(true),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
		)
	}
	_ = p.bar.Set64(done)
}

// done ends the bar's line: full when ok, left where it stopped otherwise.
func (p *progress) done(ok bool) {
	if p == nil || p.bar == nil {
		return
	}
	if ok {
		_ = p.bar.Finish()
	} else {
		_ = p.bar.Exit()
	}
	fmt.Fprintln(p.w)
}
