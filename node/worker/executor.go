package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrTimeout is returned by an Executor whose task ran past its time limit.
var ErrTimeout = errors.New("worker: job ran past its timeout")

// ExitError is a task that ended with a non-zero status.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("worker: job exited with status %d", e.Code) }

// Task is one run of one job.
type Task struct {
	JobID   string
	Root    string        // the job directory (job.json, input/, output/, export/)
	Timeout time.Duration // the executor stops the task after this
	Log     io.Writer     // stdout and stderr
	GPUs    []string      // assigned GPU UUIDs (empty for CPU jobs)
	Image   string        // container image, for executors that run images
	// Network is scheduler.NetworkBridge when the job asked for network
	// (and its tenant may have it); empty: no network. An executor that
	// cannot give it refuses the task.
	Network string
}

// ErrNoNetwork: the executor cannot, or on this node may not, give a task
// the network it asks for.
var ErrNoNetwork = errors.New("worker: this node runs jobs without network")

// Executor runs tasks. Run returns nil on a zero exit, ErrTimeout past the
// time limit, ctx's error when cancelled, or *ExitError.
type Executor interface {
	Name() string
	Run(ctx context.Context, t Task) error
}

// Process runs the built-in workload in a child process of this binary:
// `<Binary> workload run --root DIR`, in its own process group so that a
// stop kills everything it started.
type Process struct {
	// Binary is the pwmesh executable (default: os.Executable()).
	Binary string
	// Args go before "workload run" (tests use them to re-enter a test binary).
	Args []string
	// Env is added to the child's environment.
	Env []string
	// KillGrace is how long a stopped child has between SIGTERM and SIGKILL
	// (default 5 s).
	KillGrace time.Duration
}

// Name is "process".
func (p *Process) Name() string { return "process" }

// Run runs t in a child process.
func (p *Process) Run(ctx context.Context, t Task) error {
	if t.Image != "" {
		return fmt.Errorf("worker: the process executor cannot run image %q: %w", t.Image, errors.ErrUnsupported)
	}
	if t.Network != "" {
		return fmt.Errorf("%w: the process executor cannot give a job network %q", ErrNoNetwork, t.Network)
	}
	bin := p.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("worker: find own binary: %w", err)
		}
	}
	grace := p.KillGrace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	runCtx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	args := append(append([]string{}, p.Args...), "workload", "run", "--root", t.Root)
	cmd := exec.CommandContext(runCtx, bin, args...)
	cmd.Dir = t.Root
	cmd.Stdout, cmd.Stderr = t.Log, t.Log
	cmd.Env = append(childEnv(os.Environ()), p.Env...)
	if len(t.GPUs) > 0 {
		cmd.Env = append(cmd.Env, "CUDA_VISIBLE_DEVICES="+strings.Join(t.GPUs, ","), "NVIDIA_VISIBLE_DEVICES="+strings.Join(t.GPUs, ","))
	} else {
		cmd.Env = append(cmd.Env, "CUDA_VISIBLE_DEVICES=")
	}
	// Its own process group, so that a stop reaches everything it started;
	// killed with the node if the node dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var (
		mu   sync.Mutex
		kill *time.Timer
	)
	cmd.Cancel = func() error {
		pid := cmd.Process.Pid
		// A run that lost its lease may already be replaced elsewhere: it
		// dies at once, without the grace period.
		if errors.Is(context.Cause(ctx), errLeaseLost) {
			return syscall.Kill(-pid, syscall.SIGKILL)
		}
		// Ask the whole group to stop; kill it if it is still there after
		// the grace period.
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		mu.Lock()
		kill = time.AfterFunc(grace, func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })
		mu.Unlock()
		return nil
	}
	cmd.WaitDelay = grace + time.Second
	err := cmd.Run()
	mu.Lock()
	if kill != nil {
		kill.Stop()
	}
	mu.Unlock()
	if cmd.Process != nil {
		// Nothing the job started outlives it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	switch {
	case errors.Is(runCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		return ErrTimeout
	case ctx.Err() != nil:
		return ctx.Err()
	case err == nil:
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Code: ee.ExitCode()}
	}
	return fmt.Errorf("worker: run child: %w", err)
}

// childEnv keeps the parts of the node's environment a job may see: no
// PWMESH_* settings (the bootstrap token among them) but PWMESH_PYTHON (the
// interpreter gpu_selftest uses), no credentials.
func childEnv(env []string) []string {
	keep := []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "CUDA_HOME", "NVIDIA_DRIVER_CAPABILITIES", "PWMESH_PYTHON"}
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(keep, k) {
			out = append(out, kv)
		}
	}
	return out
}
