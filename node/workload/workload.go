package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/pwmesh/pwmesh/node/workload/npy"
)

// Request is one job for the built-in workload.
type Request struct {
	Type   string
	Params Params
	// Dataset is the dataset .npz (nil for generate_dataset).
	Dataset []byte
	// Operator is a cached compiled operator (MarshalBinary output) or nil.
	// When it decodes and matches the job's operator key it is used (a cache
	// "hit"); otherwise the operator is rebuilt (a "miss").
	Operator []byte
	// MaxOperatorBytes bounds the compiled operator the job may use, in
	// bytes of sign bits (OperatorBytes); 0: no bound beyond the largest
	// size and sampling. A job over it fails with ErrOperatorTooLarge
	// before anything is built, a cached copy or not.
	MaxOperatorBytes int64
	// Log receives progress lines; may be nil.
	Log io.Writer
}

// Result is what a job produced.
type Result struct {
	// Metrics use the names of WORKLOAD.md; values are float64, string or
	// [2]float64, all JSON-encodable.
	Metrics map[string]any
	// Artifacts maps a relative path in the RunBundle to its bytes.
	Artifacts map[string][]byte
	// Dataset and DatasetName are set by generate_dataset only.
	Dataset     []byte
	DatasetName string
	// Operator is the compiled operator when this run built it (a miss), for
	// the caller to cache under OperatorKey; nil on a hit.
	Operator    []byte
	OperatorKey string
	SpecID      string
	Seeds       map[string]int64
}

// Run executes one job. Errors caused by the request (type, params, dataset)
// wrap ErrInvalidParams; cancellation returns ctx.Err(). The artifacts and the
// dataset depend only on the request: the same inputs give the same bytes.
func Run(ctx context.Context, req Request) (*Result, error) {
	start := time.Now()
	if err := req.Params.Validate(req.Type); err != nil {
		return nil, err
	}
	spec, _ := Lookup(req.Type) // Validate refused unknown types
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	j := &job{ctx: ctx, req: req, p: req.Params, res: &Result{
		Metrics:   map[string]any{},
		Artifacts: map[string][]byte{},
		SpecID:    spec.SpecID,
		Seeds:     map[string]int64{},
	}}
	if err := spec.run(j); err != nil {
		return nil, err
	}
	j.res.Metrics["runtime_s"] = time.Since(start).Seconds()
	return j.res, nil
}

type job struct {
	ctx context.Context
	req Request
	p   Params
	res *Result
}

func (j *job) logf(format string, args ...any) {
	if j.req.Log != nil {
		fmt.Fprintf(j.req.Log, format+"\n", args...)
	}
}

// operator returns the compiled operator for the key, from the request's
// cached copy when it matches, else built afresh.
func (j *job) operator(size int, sampling float64, seed int64) (*Operator, error) {
	if bound := j.req.MaxOperatorBytes; bound > 0 {
		if n := OperatorBytes(size, sampling); n > bound {
			m := rowsFor(size, sampling)
			return nil, fmt.Errorf("%w: size %d at sampling %g makes a %d×%d operator of %s, over this job's bound of %s",
				ErrOperatorTooLarge, size, sampling, m, size*size, mib(n), mib(bound))
		}
	}
	key := OperatorKeyFor(size, sampling, seed)
	j.res.OperatorKey = key
	j.res.Seeds["operator_seed"] = seed
	if j.req.Operator != nil {
		op, err := UnmarshalOperator(j.req.Operator)
		if err == nil && op.Key() == key {
			j.res.Metrics["operator_cache"] = "hit"
			j.logf("operator %.12s: cache hit (%d×%d)", key, op.M, op.N)
			return op, nil
		}
		if err == nil {
			err = fmt.Errorf("key %.12s does not match", op.Key())
		}
		j.logf("operator %.12s: cached copy unusable (%v), rebuilding", key, err)
	}
	op, err := buildOperator(j.ctx, size, sampling, seed)
	if err != nil {
		return nil, err
	}
	b, err := op.MarshalBinary()
	if err != nil {
		return nil, err
	}
	j.res.Operator = b
	j.res.Metrics["operator_cache"] = "miss"
	j.logf("operator %.12s: built (%d×%d, L=%.6g)", key, op.M, op.N, op.L)
	return op, nil
}

// mib writes a byte count in MiB, exactly: "32 MiB", "0.5 MiB".
func mib(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', -1, 64) + " MiB"
}

func (j *job) npyArtifact(name string, data []float64, shape ...int) error {
	b, err := npy.Encode(npy.New(data, shape...))
	if err != nil {
		return err
	}
	j.res.Artifacts[name] = b
	return nil
}

func (j *job) generate() error {
	p := j.p
	g, b := p.theta()
	op, err := j.operator(p.Size, p.Sampling, p.OperatorSeed)
	if err != nil {
		return err
	}
	j.res.Seeds["seed"] = p.Seed
	s := simulate(op, p.Seed, g, b, p.Noise)
	seed, noise, gain, bias := p.Seed, p.Noise, g, b
	spec := DatasetSpec{Workload: Version, Size: p.Size, Sampling: p.Sampling, OperatorSeed: p.OperatorSeed,
		Seed: &seed, Noise: &noise, Gain: &gain, Bias: &bias, Severity: p.Severity}
	ds, err := encodeDataset(spec, s, op.M)
	if err != nil {
		return err
	}
	j.res.Dataset = ds
	tag := p.Severity
	if tag == "" {
		tag = "g" + strconv.FormatFloat(g, 'g', -1, 64) + "-b" + strconv.FormatFloat(b, 'g', -1, 64)
	}
	j.res.DatasetName = fmt.Sprintf("spc-%d-%s-seed%d.npz", p.Size, tag, p.Seed)
	js, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	j.res.Artifacts["spec.json"] = append(js, '\n')
	if err := j.npyArtifact("x_gt.npy", s.x, p.Size, p.Size); err != nil {
		return err
	}
	if err := j.npyArtifact("y.npy", s.y, op.M); err != nil {
		return err
	}
	j.res.Artifacts["x_gt.png"] = grayPNG(s.x, p.Size)
	mt := j.res.Metrics
	mt["gain"], mt["bias"], mt["noise"] = g, b, p.Noise
	mt["size"], mt["sampling"], mt["measurements"] = float64(p.Size), p.Sampling, float64(op.M)
	j.logf("generated %s: %d measurements, gain %g, bias %g, noise %g", j.res.DatasetName, op.M, g, b, p.Noise)
	return nil
}

// load parses the dataset and fetches its operator.
func (j *job) load(needY, needCal bool) (*dataset, *Operator, error) {
	d, err := parseDataset(j.req.Dataset, needY, needCal)
	if err != nil {
		return nil, nil, err
	}
	if d.spec.Seed != nil {
		j.res.Seeds["dataset_seed"] = *d.spec.Seed
	}
	op, err := j.operator(d.spec.Size, d.spec.Sampling, d.spec.OperatorSeed)
	if err != nil {
		return nil, nil, err
	}
	return d, op, nil
}

func (j *job) runCalibration(d *dataset, op *Operator) (Calibration, error) {
	j.res.Seeds["seed"] = j.p.Seed
	c, err := calibrate(j.ctx, op, d.yCal, d.levels, j.p.Seed)
	if err != nil {
		return c, err
	}
	js, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return c, err
	}
	j.res.Artifacts["theta_corrected.json"] = append(js, '\n')
	mt := j.res.Metrics
	mt["gain"], mt["bias"], mt["gain_ci"], mt["bias_ci"] = c.Gain, c.Bias, c.GainCI, c.BiasCI
	if d.hasTrue {
		mt["gain_true"], mt["bias_true"] = d.trueG, d.trueB
		mt["gain_abs_error"], mt["bias_abs_error"] = math.Abs(c.Gain-d.trueG), math.Abs(c.Bias-d.trueB)
	}
	j.logf("calibration: gain %.6f [%.6f, %.6f], bias %.6f [%.6f, %.6f]",
		c.Gain, c.GainCI[0], c.GainCI[1], c.Bias, c.BiasCI[0], c.BiasCI[1])
	return c, nil
}

func (j *job) calibrate() error {
	d, op, err := j.load(false, true)
	if err != nil {
		return err
	}
	_, err = j.runCalibration(d, op)
	return err
}

// solve reconstructs from d.y with θ = (g, b) and scores it against x_gt.
func (j *job) solve(d *dataset, op *Operator, label string, g, b float64) (x []float64, psnr, ssim float64, err error) {
	x, err = reconstruct(j.ctx, op, d.y, fistaConfig{
		iterations: j.p.Iterations, lambda: j.p.Lambda, gain: g, bias: b, log: j.req.Log, label: label,
	})
	if err != nil {
		return nil, 0, 0, err
	}
	if d.xGT != nil {
		psnr, ssim = PSNR(x, d.xGT), SSIM(x, d.xGT, op.Size, op.Size)
		j.logf("reconstruction %s (gain %.6g, bias %.6g): PSNR %.3f dB, SSIM %.4f", label, g, b, psnr, ssim)
	}
	return x, psnr, ssim, nil
}

func (j *job) reconstruct() error {
	d, op, err := j.load(true, false)
	if err != nil {
		return err
	}
	g, b := j.p.theta()
	x, psnr, ssim, err := j.solve(d, op, "corrected", g, b)
	if err != nil {
		return err
	}
	mt := j.res.Metrics
	mt["gain_used"], mt["bias_used"] = g, b
	mt["iterations"], mt["lambda"] = float64(j.p.Iterations), j.p.Lambda
	if d.xGT != nil {
		mt["psnr_db"], mt["ssim"] = psnr, ssim
	}
	if err := j.npyArtifact("x_hat.npy", x, op.Size, op.Size); err != nil {
		return err
	}
	j.res.Artifacts["x_hat.png"] = grayPNG(x, op.Size)
	return nil
}

func (j *job) calibrateAndReconstruct() error {
	d, op, err := j.load(true, true)
	if err != nil {
		return err
	}
	c, err := j.runCalibration(d, op)
	if err != nil {
		return err
	}
	mt := j.res.Metrics
	mt["iterations"], mt["lambda"] = float64(j.p.Iterations), j.p.Lambda
	xc, pc, sc, err := j.solve(d, op, "calibrated", c.Gain, c.Bias)
	if err != nil {
		return err
	}
	xw, pw, sw, err := j.solve(d, op, "wrong", 1, 0)
	if err != nil {
		return err
	}
	if err := j.npyArtifact("x_hat.npy", xc, op.Size, op.Size); err != nil {
		return err
	}
	if err := j.npyArtifact("x_hat_wrong.npy", xw, op.Size, op.Size); err != nil {
		return err
	}
	j.res.Artifacts["x_hat.png"] = grayPNG(xc, op.Size)
	if d.xGT != nil {
		mt["psnr_db"], mt["ssim"] = pc, sc
		mt["psnr_calibrated_db"], mt["ssim_calibrated"] = pc, sc
		mt["psnr_wrong_db"], mt["ssim_wrong"] = pw, sw
	}
	if !d.hasTrue {
		j.logf("dataset has no true gain/bias: oracle scenario and rho skipped")
		return nil
	}
	xo, po, so, err := j.solve(d, op, "oracle", d.trueG, d.trueB)
	if err != nil {
		return err
	}
	if err := j.npyArtifact("x_hat_oracle.npy", xo, op.Size, op.Size); err != nil {
		return err
	}
	if d.xGT != nil {
		mt["psnr_oracle_db"], mt["ssim_oracle"] = po, so
		if den := po - pw; math.Abs(den) > 1e-9 {
			mt["rho"] = (pc - pw) / den
		}
	}
	return nil
}
