package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/pwmesh/pwmesh/cas/bundle"
	"github.com/pwmesh/pwmesh/node/workload"
)

// RunChild runs the built-in workload on the job directory root: the body of
// `pwmesh workload run`, in a child process or a container. It writes the
// artifacts and a partial manifest to output/, side outputs to export/ and,
// on failure, error.json, and returns the process exit code.
func RunChild(ctx context.Context, root string, log io.Writer) int {
	if err := runChild(ctx, root, log); err != nil {
		code, exit := "workload_failed", ExitFailed
		switch {
		case errors.Is(err, workload.ErrOperatorTooLarge):
			code, exit = CodeOperatorTooLarge, ExitInvalidInput
		case errors.Is(err, workload.ErrInvalidParams):
			code, exit = "invalid_input", ExitInvalidInput
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			code = "interrupted"
		}
		fmt.Fprintf(log, "error: %v\n", err)
		_ = writeJSON(filepath.Join(root, ErrorFile), ChildError{Code: code, Message: err.Error()})
		return exit
	}
	return ExitOK
}

func runChild(ctx context.Context, root string, log io.Writer) error {
	b, err := os.ReadFile(filepath.Join(root, JobFile))
	if err != nil {
		return fmt.Errorf("read job: %w", err)
	}
	var spec JobSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("job.json: %w", err)
	}
	p, err := workload.ParseParams(spec.Type, spec.Params)
	if err != nil {
		return err
	}
	req := workload.Request{Type: spec.Type, Params: p, MaxOperatorBytes: spec.MaxOperatorBytes, Log: log}
	if t, _ := workload.Lookup(spec.Type); t.NeedsDataset { // ParseParams refused unknown types
		req.Dataset, err = os.ReadFile(filepath.Join(root, InputDir, DatasetFile))
		if err != nil {
			return fmt.Errorf("%w: read dataset: %v", workload.ErrInvalidParams, err)
		}
	}
	if op, err := os.ReadFile(filepath.Join(root, InputDir, OperatorBin)); err == nil {
		req.Operator = op
	}
	start := time.Now()
	fmt.Fprintf(log, "running %s (job %s, attempt %d) on %s/%s\n", spec.Type, spec.ID, spec.Attempt, runtime.GOOS, runtime.GOARCH)
	res, err := workload.Run(ctx, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "finished in %.3fs\n", time.Since(start).Seconds())
	out := filepath.Join(root, OutputDir)
	exp := filepath.Join(root, ExportDir)
	for _, d := range []string{out, exp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(res.Artifacts)) {
		p := filepath.Join(out, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, res.Artifacts[name], 0o644); err != nil {
			return err
		}
	}
	m := bundle.Manifest{
		Version:    bundle.Version,
		SpecID:     res.SpecID,
		Provenance: bundle.Provenance{Seeds: res.Seeds},
		Metrics:    res.Metrics,
	}
	if err := writeJSON(filepath.Join(out, bundle.ManifestName), m); err != nil {
		return err
	}
	if res.Dataset != nil {
		if err := os.WriteFile(filepath.Join(exp, DatasetFile), res.Dataset, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(exp, DatasetNameFile), []byte(res.DatasetName), 0o644); err != nil {
			return err
		}
	}
	if res.Operator != nil && res.OperatorKey != "" {
		if err := os.WriteFile(filepath.Join(exp, OperatorBin), res.Operator, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(exp, OperatorKeyFile), []byte(res.OperatorKey), 0o644); err != nil {
			return err
		}
	}
	return nil
}
