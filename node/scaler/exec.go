package scaler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Exec runs an operator's command for every action (--scaler exec:CMD): the
// command line split on spaces, no shell, the Request as one JSON object on
// its standard input. Exit status 0 means done.
type Exec struct {
	Argv []string
	// Env is added to the command's environment.
	Env []string
}

// ParseExec reads "exec:CMD ARGS..." (the flag's value).
func ParseExec(spec string) (*Exec, error) {
	rest, ok := strings.CutPrefix(spec, "exec:")
	if !ok {
		return nil, fmt.Errorf("want exec:CMD, got %q", spec)
	}
	argv := strings.Fields(rest)
	if len(argv) == 0 {
		return nil, errors.New("exec: names no command (want e.g. exec:/usr/local/bin/add-gpu-workers)")
	}
	return &Exec{Argv: argv}, nil
}

// maxHookOutput bounds what of a failed hook's output goes into the error.
const maxHookOutput = 2048

// Scale runs the command once and waits for it (ctx bounds it: the loop
// gives it its Timeout).
func (e *Exec) Scale(ctx context.Context, r Request) error {
	in, err := json.Marshal(r)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, e.Argv[0], e.Argv[1:]...)
	cmd.Stdin = bytes.NewReader(append(in, '\n'))
	var out tail
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(hookEnviron(cmd.Environ()), e.Env...)
	// Workers the command leaves running may hold its output open: once
	// it exits 0, that is no failure.
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if err == nil || errors.Is(err, exec.ErrWaitDelay) {
		return nil
	}
	msg := strings.TrimSpace(out.String())
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if msg != "" {
		return fmt.Errorf("%s: %w: %s", e.Argv[0], err, msg)
	}
	return fmt.Errorf("%s: %w", e.Argv[0], err)
}

// hookEnviron is the node's environment without its PWMESH_* settings: a
// worker the hook starts must not inherit the leader's data directory,
// scaler, bootstrap token or addresses (the request says what it needs).
func hookEnviron(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PWMESH_") {
			out = append(out, kv)
		}
	}
	return out
}

// tail keeps the last maxHookOutput bytes written to it.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if k := len(t.b) - maxHookOutput; k > 0 {
		t.b = append(t.b[:0], t.b[k:]...)
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.b) }
