package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/node/workload"
	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
)

// defaultPoll is how often wait commands ask for a job's state.
const defaultPoll = time.Second

func (a *app) jobCmd() *cobra.Command {
	c := groupCmd("job", "Submit, inspect and fetch the results of jobs")
	c.AddCommand(a.jobSubmitCmd(), a.jobGetCmd(), a.jobListCmd(), a.jobWaitCmd(),
		a.jobCancelCmd(), a.jobLogsCmd(), a.jobBundleCmd())
	return c
}

// pollFlag adds the hidden --poll-interval flag of the wait commands.
func pollFlag(c *cobra.Command, poll *time.Duration) {
	c.Flags().DurationVar(poll, "poll-interval", defaultPoll, "how often to ask for the job's state")
	_ = c.Flags().MarkHidden("poll-interval")
}

func (a *app) jobSubmitCmd() *cobra.Command {
	var (
		req        scheduler.JobRequest
		params     []string
		paramsJSON string
		idemKey    string
		wait       bool
		poll       time.Duration
	)
	c := &cobra.Command{
		Use:   "submit --type TYPE [--dataset ID] [--param KEY=VALUE]...",
		Short: "Submit a job and print its id",
		Long: "Submit a job. --param values are JSON when they parse as JSON (size=32 is a\n" +
			"number, flag=true a boolean) and strings otherwise (severity=mild);\n" +
			"--param overrides the same key of --params-json. The params are checked here\n" +
			"as the node checks them (WORKLOAD.md has their meaning).\n\nJob types:\n" + jobTypesHelp(),
		Example: "  pwmesh job submit --type reconstruct --dataset ds-1 --param size=32 --gpus 1 --wait",
		Args:    args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := buildParams(paramsJSON, params)
			if err != nil {
				return err
			}
			req.Params = p
			if err := checkJobType(req, p); err != nil {
				return err
			}
			if req.Priority != "" && scheduler.PriorityRank(req.Priority) < 0 {
				return usagef("--priority %q: want free, paid or sprint", req.Priority)
			}
			if req.Timeout != "" {
				if d, err := time.ParseDuration(req.Timeout); err != nil || d <= 0 {
					return usagef("--timeout %q: want a positive duration such as 30m or 2h", req.Timeout)
				}
			}
			if req.Resources.GPUs < 0 || req.Resources.GPUMemoryMB < 0 {
				return usagef("--gpus and --gpu-memory-mb must not be negative")
			}
			cl := a.client()
			j, err := cl.SubmitJob(cmd.Context(), req, idemKey)
			if err != nil {
				return err
			}
			if !wait {
				if a.json {
					return a.printJSON(j)
				}
				_, err := fmt.Fprintln(a.stdout, j.ID)
				return err
			}
			j, err = cl.WaitJob(cmd.Context(), j.ID, poll)
			if err != nil {
				return err
			}
			if a.json {
				err = a.printJSON(j)
			} else {
				err = a.printJob(j)
			}
			if err != nil {
				return err
			}
			return a.failUnlessSucceeded(j)
		},
	}
	f := c.Flags()
	f.StringVar(&req.Type, "type", "", "job type: "+strings.Join(workload.Names(), ", ")+" (required)")
	f.StringVar(&req.Dataset, "dataset", "", "dataset id (required by the types that read one)")
	f.StringArrayVar(&params, "param", nil, "workload parameter KEY=VALUE (repeatable)")
	f.StringVar(&paramsJSON, "params-json", "", "workload parameters as a JSON object")
	f.StringVar(&req.Priority, "priority", "", "free, paid or sprint (default: the key's tier)")
	f.IntVar(&req.Resources.GPUs, "gpus", 0, "number of GPUs")
	f.StringVar(&req.Resources.GPUModel, "gpu-model", "", "GPU model the job needs, e.g. A100")
	f.IntVar(&req.Resources.GPUMemoryMB, "gpu-memory-mb", 0, "GPU memory the job needs per GPU, in MB")
	f.StringVar(&req.Timeout, "timeout", "", "run time limit, e.g. 30m (default 1h; 4h for sprint)")
	f.StringVar(&req.Image, "image", "", "container image (default: the built-in workload)")
	f.StringVar(&req.Region, "region", "", "run only in this region")
	f.StringVar(&req.Network, "network", "", "none or bridge: bridge gives a job with --image network (paid tiers only; default none)")
	f.StringVar(&idemKey, "idempotency-key", "", "resubmitting with the same key returns the first job")
	f.BoolVar(&wait, "wait", false, "wait for the job to end, print it, and fail unless it succeeded")
	pollFlag(c, &poll)
	_ = c.MarkFlagRequired("type")
	return c
}

// jobTypesHelp lists the workload registry's job types with their params.
func jobTypesHelp() string {
	var b strings.Builder
	for _, s := range workload.Types() {
		needs := ""
		switch {
		case s.NeedsDataset:
			needs = "; needs --dataset"
		case s.NeedsGPU:
			needs = "; needs --gpus 1 or more"
		}
		fmt.Fprintf(&b, "  %s: %s\n      params: %s%s\n", s.Name, s.Summary, strings.Join(s.Params, ", "), needs)
	}
	return strings.TrimRight(b.String(), "\n")
}

// checkJobType refuses, before any request, a job the node would refuse
// for its type: an unknown type, params that do not parse or apply, a
// missing dataset or GPU. The rules are the workload registry's, as on the
// node.
func checkJobType(req scheduler.JobRequest, params json.RawMessage) error {
	s, ok := workload.Lookup(req.Type)
	if !ok {
		return usagef("--type %q: want one of %s", req.Type, strings.Join(workload.Names(), ", "))
	}
	if _, err := workload.ParseParams(req.Type, params); err != nil {
		msg := strings.TrimSuffix(strings.TrimPrefix(err.Error(), "workload: "), ": "+workload.ErrInvalidParams.Error())
		return usagef("%s job params: %s", req.Type, msg)
	}
	if s.NeedsDataset && req.Dataset == "" {
		return usagef("a %s job needs --dataset ID (see pwmesh dataset list)", req.Type)
	}
	if s.NeedsGPU && (req.Resources.GPUs < 1 || req.Dataset != "") {
		return usagef("a %s job needs --gpus 1 or more and no --dataset", req.Type)
	}
	return nil
}

// buildParams merges --params-json and the --param flags into one JSON
// object; nil when neither is given.
func buildParams(paramsJSON string, params []string) (json.RawMessage, error) {
	if paramsJSON == "" && len(params) == 0 {
		return nil, nil
	}
	m := map[string]json.RawMessage{}
	if paramsJSON != "" {
		if err := json.Unmarshal([]byte(paramsJSON), &m); err != nil || m == nil {
			return nil, usagef("--params-json: want a JSON object: %v", err)
		}
	}
	for _, p := range params {
		k, v, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usagef("--param %q: want KEY=VALUE", p)
		}
		if json.Valid([]byte(v)) {
			m[k] = json.RawMessage(strings.TrimSpace(v))
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, usagef("--param %q: %v", p, err)
		}
		m[k] = b
	}
	b, err := json.Marshal(m) // sorted keys
	if err != nil {
		return nil, usagef("params: %v", err)
	}
	return b, nil
}

// failUnlessSucceeded says why j did not succeed and returns exit status 1;
// nil when it succeeded.
func (a *app) failUnlessSucceeded(j scheduler.Job) error {
	if j.State == scheduler.StateSucceeded {
		return nil
	}
	msg := fmt.Sprintf("pwmesh: job %s %s", j.ID, j.State)
	switch {
	case j.Error != nil && j.Error.Message != "":
		msg += ": " + j.Error.Message
		if j.Error.Code != "" {
			msg += " (" + j.Error.Code + ")"
		}
	case j.Reason != "":
		msg += ": " + j.Reason
	}
	fmt.Fprintln(a.stderr, msg)
	return &exitError{code: 1}
}

func (a *app) jobGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a job",
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := a.client().GetJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(j)
			}
			return a.printJob(j)
		},
	}
}

// printJob writes one job as "Field: value" lines.
func (a *app) printJob(j scheduler.Job) error {
	tw := a.table()
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("ID", j.ID)
	row("Type", j.Type)
	state := j.State
	if j.CancelRequested && !scheduler.Terminal(j.State) {
		state += " (cancel requested)"
	}
	row("State", state)
	if j.State == scheduler.StateQueued {
		row("Queue", queueInfo(j))
	} else if j.Reason != "" {
		row("Reason", j.Reason)
	}
	row("Priority", j.Priority)
	row("Tenant", orDash(j.Tenant))
	row("Dataset", orDash(j.Dataset))
	if len(j.Params) > 0 {
		row("Params", string(j.Params))
	}
	res := fmt.Sprintf("%d GPU(s)", j.Resources.GPUs)
	if j.Resources.GPUModel != "" {
		res += " " + j.Resources.GPUModel
	}
	if j.Resources.GPUMemoryMB > 0 {
		res += fmt.Sprintf(", %d MB each", j.Resources.GPUMemoryMB)
	}
	row("Resources", res)
	if j.Image != "" {
		row("Image", j.Image)
	}
	if j.Region != "" {
		row("Region", j.Region)
	}
	if j.Network != "" {
		row("Network", j.Network)
	}
	row("Node", orDash(j.Node))
	row("Attempts", fmt.Sprint(j.Attempts))
	row("Submitted", fmtTime(j.SubmittedAt))
	row("Started", fmtTimePtr(j.StartedAt))
	row("Finished", fmtTimePtr(j.FinishedAt))
	for _, k := range slices.Sorted(maps.Keys(j.Metrics)) {
		row("Metric "+k, fmt.Sprint(j.Metrics[k]))
	}
	if b := j.RunBundle; b != nil {
		row("RunBundle", fmt.Sprintf("%s (%s)", b.CID, humanBytes(b.Size)))
		row("SHA256", b.SHA256)
	}
	for _, k := range slices.Sorted(maps.Keys(j.Outputs)) {
		row("Output "+k, j.Outputs[k])
	}
	if j.Error != nil {
		row("Error", fmt.Sprintf("%s: %s", j.Error.Code, j.Error.Message))
	}
	return tw.Flush()
}

// queueInfo is "#3: waiting for a free A100" for a queued job.
func queueInfo(j scheduler.Job) string {
	var s string
	if j.QueuePosition > 0 {
		s = fmt.Sprintf("#%d", j.QueuePosition)
	}
	if j.Reason != "" {
		if s != "" {
			s += ": "
		}
		s += j.Reason
	}
	return orDash(s)
}

func (a *app) jobListCmd() *cobra.Command {
	var (
		opts client.ListJobsOptions
		all  bool
	)
	c := &cobra.Command{
		Use:   "list",
		Short: "List your jobs in submission order (oldest first, paged)",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.State != "" && !scheduler.ValidState(opts.State) {
				return usagef("--state %q: want queued, running, succeeded, failed, cancelled or timed_out", opts.State)
			}
			if opts.Type != "" && !workload.ValidType(opts.Type) {
				return usagef("--type %q: want one of %s", opts.Type, strings.Join(workload.Names(), ", "))
			}
			if opts.Limit < 0 {
				return usagef("--limit must not be negative")
			}
			cl := a.client()
			var jobs []scheduler.Job
			seen := map[string]bool{}
			for {
				page, next, err := cl.ListJobs(cmd.Context(), opts)
				if err != nil {
					return err
				}
				jobs = append(jobs, page...)
				if next == "" {
					break
				}
				if !all {
					fmt.Fprintf(a.stderr, "more jobs: add --all, or --cursor %s for the next page\n", next)
					break
				}
				if seen[next] {
					return fmt.Errorf("list jobs: the node returned cursor %q twice", next)
				}
				seen[next] = true
				opts.Cursor = next
			}
			if a.json {
				if jobs == nil {
					jobs = []scheduler.Job{}
				}
				return a.printJSON(jobs)
			}
			tw := a.table()
			fmt.Fprintln(tw, "ID\tTYPE\tSTATE\tPRIORITY\tNODE\tATTEMPTS\tSUBMITTED\tQUEUE")
			for _, j := range jobs {
				queue := ""
				if j.State == scheduler.StateQueued {
					queue = queueInfo(j)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n",
					j.ID, j.Type, j.State, j.Priority, orDash(j.Node), j.Attempts, fmtTime(j.SubmittedAt), queue)
			}
			return tw.Flush()
		},
	}
	f := c.Flags()
	f.StringVar(&opts.State, "state", "", "only jobs in this state")
	f.StringVar(&opts.Type, "type", "", "only jobs of this type ("+strings.Join(workload.Names(), ", ")+")")
	f.IntVar(&opts.Limit, "limit", 0, "jobs per page (default: the node's)")
	f.StringVar(&opts.Cursor, "cursor", "", "start at this page cursor")
	f.BoolVar(&all, "all", false, "fetch every page")
	return c
}

func (a *app) jobWaitCmd() *cobra.Command {
	var (
		timeout time.Duration
		poll    time.Duration
	)
	c := &cobra.Command{
		Use:   "wait ID",
		Short: "Wait for a job to end; exit 0 only if it succeeded",
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 {
				return usagef("--timeout must not be negative")
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			j, err := a.client().WaitJob(ctx, args[0], poll)
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) && cmd.Context().Err() == nil {
					return fmt.Errorf("job %s still %s after %s", args[0], j.State, timeout)
				}
				return err
			}
			if a.json {
				err = a.printJSON(j)
			} else {
				_, err = fmt.Fprintf(a.stdout, "%s %s\n", j.ID, j.State)
			}
			if err != nil {
				return err
			}
			return a.failUnlessSucceeded(j)
		},
	}
	c.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (default: wait forever)")
	pollFlag(c, &poll)
	return c
}

func (a *app) jobCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a job",
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := a.client().CancelJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(j)
			}
			if scheduler.Terminal(j.State) {
				_, err = fmt.Fprintf(a.stdout, "%s %s\n", j.ID, j.State)
			} else {
				_, err = fmt.Fprintf(a.stdout, "%s cancel requested (state %s)\n", j.ID, j.State)
			}
			return err
		},
	}
}

func (a *app) jobLogsCmd() *cobra.Command {
	var follow bool
	c := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a job's log",
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, err := a.client().Logs(cmd.Context(), args[0], follow)
			if err != nil {
				return err
			}
			defer rc.Close()
			if _, err := io.Copy(a.stdout, rc); err != nil && cmd.Context().Err() == nil {
				return fmt.Errorf("logs of %s: %w", args[0], err)
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the job ends")
	return c
}

func (a *app) jobBundleCmd() *cobra.Command {
	return a.downloadCmd(&cobra.Command{
		Use:   "bundle ID",
		Short: "Download a succeeded job's RunBundle and check its SHA-256",
		Long: "Download a succeeded job's RunBundle to FILE (default <id>.runbundle.tar).\n" +
			"The bytes go to FILE.part first, which a rerun resumes; FILE appears only\n" +
			"once the SHA-256 matches the job's runbundle.sha256.",
	}, "<id>.runbundle.tar", bundleDownload)
}

// bundleDownload looks job id up and describes the download of its
// RunBundle to <id>.runbundle.tar.
func bundleDownload(ctx context.Context, cl *client.Client, id string) (verifiedDownload, error) {
	j, err := cl.GetJob(ctx, id)
	if err != nil {
		return verifiedDownload{}, err
	}
	want := j.RunBundle
	if want == nil || want.SHA256 == "" {
		if j.State != scheduler.StateSucceeded {
			return verifiedDownload{}, fmt.Errorf("job %s is %s: a job has a RunBundle once it succeeded", id, j.State)
		}
		return verifiedDownload{}, fmt.Errorf("job %s has no RunBundle", id)
	}
	return verifiedDownload{
		id: id, get: cl.DownloadBundleFrom, out: id + ".runbundle.tar",
		what: "bundle of job " + id, owner: "the job", desc: "bundle " + id,
		sha256: want.SHA256, size: want.Size, etag: want.CID,
	}, nil
}
