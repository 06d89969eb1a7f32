package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/pwmesh/pwmesh/node/workload/npy"
)

// TestQualityBars checks the quality bars of WORKLOAD.md for every severity.
// The 64×64 cases are skipped with -short (they dominate the race run).
func TestQualityBars(t *testing.T) {
	t.Parallel()
	for _, size := range []int{32, 64} {
		for _, sev := range []string{"mild", "moderate", "severe"} {
			t.Run(fmt.Sprintf("%d/%s", size, sev), func(t *testing.T) {
				t.Parallel()
				if size == 64 && testing.Short() {
					t.Skip("64×64 severity matrix skipped in -short mode")
				}
				ds := genDataset(t, size, sev, 0)
				r, err := Run(context.Background(), Request{
					Type: TypeCalibrateAndReconstruct, Params: DefaultParams(TypeCalibrateAndReconstruct),
					Dataset: ds, Operator: testOperator(t, size),
				})
				if err != nil {
					t.Fatal(err)
				}
				g, b, _ := SeverityTheta(sev)
				oracle, wrong, cal := metric(t, r, "psnr_oracle_db"), metric(t, r, "psnr_wrong_db"), metric(t, r, "psnr_calibrated_db")
				rho := metric(t, r, "rho")
				t.Logf("%d×%d %s: oracle %.2f dB, wrong %.2f dB, calibrated %.2f dB, rho %.4f, SSIM %.4f, gain %.5f, bias %.5f",
					size, size, sev, oracle, wrong, cal, rho, metric(t, r, "ssim"), metric(t, r, "gain"), metric(t, r, "bias"))
				floor := 30.0
				if size == 32 {
					floor = 28
				}
				if oracle < floor {
					t.Errorf("oracle PSNR %.2f dB < %.0f dB", oracle, floor)
				}
				if cal < oracle-0.5 {
					t.Errorf("calibrated PSNR %.2f dB < oracle %.2f − 0.5 dB", cal, oracle)
				}
				if gap := map[string]float64{"moderate": 8, "severe": 15}[sev]; cal-wrong < gap {
					t.Errorf("calibrated − wrong = %.2f dB < %.0f dB", cal-wrong, gap)
				}
				if rho < 0.9 {
					t.Errorf("rho %.4f < 0.9", rho)
				}
				if d := math.Abs(metric(t, r, "gain") - g); d >= 0.01 {
					t.Errorf("|ĝ − g| = %v", d)
				}
				if d := math.Abs(metric(t, r, "bias") - b); d >= 0.005 {
					t.Errorf("|b̂ − b| = %v", d)
				}
				if ci := interval(t, r, "gain_ci"); !(ci[0] <= g && g <= ci[1]) {
					t.Errorf("gain interval %v misses %v", ci, g)
				}
				if ci := interval(t, r, "bias_ci"); !(ci[0] <= b && b <= ci[1]) {
					t.Errorf("bias interval %v misses %v", ci, b)
				}
				if r.Metrics["psnr_db"] != r.Metrics["psnr_calibrated_db"] || r.Metrics["operator_cache"] != "hit" {
					t.Errorf("psnr_db %v, operator_cache %v", r.Metrics["psnr_db"], r.Metrics["operator_cache"])
				}
				for _, a := range []string{"x_hat.npy", "x_hat_oracle.npy", "x_hat_wrong.npy", "x_hat.png", "theta_corrected.json"} {
					if len(r.Artifacts[a]) == 0 {
						t.Errorf("artifact %s missing", a)
					}
				}
			})
		}
	}
}

// TestBootstrapCoverage checks that the 95 % interval is honest: over many
// noise draws it holds the true θ about 95 % of the time.
func TestBootstrapCoverage(t *testing.T) {
	t.Parallel()
	op, err := UnmarshalOperator(testOperator(t, 32))
	if err != nil {
		t.Fatal(err)
	}
	const draws = 100
	g, b, _ := SeverityTheta("moderate")
	var cg, cb int
	for seed := range int64(draws) {
		s := simulate(op, seed, g, b, DefaultNoise)
		c, err := calibrate(context.Background(), op, s.yCal, s.levels, seed)
		if err != nil {
			t.Fatal(err)
		}
		if c.GainCI[0] <= g && g <= c.GainCI[1] {
			cg++
		}
		if c.BiasCI[0] <= b && b <= c.BiasCI[1] {
			cb++
		}
	}
	t.Logf("coverage over %d draws: gain %d%%, bias %d%%", draws, cg, cb)
	if cg < 85 || cb < 85 {
		t.Errorf("coverage gain %d%%, bias %d%%; want about 95%%", cg, cb)
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	ds1, ds2 := genDataset(t, 32, "severe", 4), genDataset(t, 32, "severe", 4)
	if !bytes.Equal(ds1, ds2) {
		t.Fatal("generate_dataset is not byte-identical for the same seed")
	}
	if bytes.Equal(ds1, genDataset(t, 32, "severe", 5)) {
		t.Fatal("different seeds give the same dataset")
	}
	run := func() *Result {
		r, err := Run(context.Background(), Request{Type: TypeCalibrateAndReconstruct,
			Params: DefaultParams(TypeCalibrateAndReconstruct), Dataset: ds1, Operator: testOperator(t, 32)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := run(), run()
	if !bytes.Equal(a.Artifacts["x_hat.npy"], b.Artifacts["x_hat.npy"]) {
		t.Fatal("x_hat.npy differs between runs")
	}
	if !reflect.DeepEqual(a.Artifacts, b.Artifacts) {
		t.Fatal("artifacts differ between runs")
	}
}

// TestCacheHitMatchesMiss runs the same job with no, a good, a corrupt and a
// mismatched cached operator.
func TestCacheHitMatchesMiss(t *testing.T) {
	t.Parallel()
	ds := genDataset(t, 16, "moderate", 1)
	p := mustParams(t, TypeCalibrateAndReconstruct, `{"iterations":30}`)
	run := func(op []byte) *Result {
		r, err := Run(context.Background(), Request{Type: TypeCalibrateAndReconstruct, Params: p, Dataset: ds, Operator: op})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	miss := run(nil)
	if miss.Metrics["operator_cache"] != "miss" || miss.Operator == nil || miss.OperatorKey != OperatorKeyFor(16, 0.25, 7) {
		t.Fatalf("miss: cache %v, operator %d bytes, key %s", miss.Metrics["operator_cache"], len(miss.Operator), miss.OperatorKey)
	}
	hit := run(miss.Operator)
	if hit.Metrics["operator_cache"] != "hit" || hit.Operator != nil || hit.OperatorKey != miss.OperatorKey {
		t.Fatalf("hit: cache %v, operator %d bytes", hit.Metrics["operator_cache"], len(hit.Operator))
	}
	if !reflect.DeepEqual(hit.Artifacts, miss.Artifacts) {
		t.Fatal("a cache hit gives different artifacts from a miss")
	}
	corrupt := bytes.Clone(miss.Operator)
	corrupt[100] ^= 0xff
	other, _ := BuildOperator(16, 0.25, 8).MarshalBinary()
	for name, op := range map[string][]byte{"corrupt": corrupt, "other key": other, "garbage": []byte("x")} {
		r := run(op)
		if r.Metrics["operator_cache"] != "miss" || !bytes.Equal(r.Operator, miss.Operator) {
			t.Errorf("%s: operator_cache %v", name, r.Metrics["operator_cache"])
		}
		if !reflect.DeepEqual(r.Artifacts, miss.Artifacts) {
			t.Errorf("%s: artifacts differ", name)
		}
	}
}

func TestGenerateDataset(t *testing.T) {
	t.Parallel()
	p := mustParams(t, TypeGenerateDataset, `{"size":16,"gain":1.3,"bias":0.02,"seed":3,"operator_seed":2}`)
	r, err := Run(context.Background(), Request{Type: TypeGenerateDataset, Params: p})
	if err != nil {
		t.Fatal(err)
	}
	if r.DatasetName != "spc-16-g1.3-b0.02-seed3.npz" || r.SpecID != "spc_gain_bias_generate_dataset" {
		t.Errorf("name %q, spec id %q", r.DatasetName, r.SpecID)
	}
	if r.Seeds["seed"] != 3 || r.Seeds["operator_seed"] != 2 || r.OperatorKey != OperatorKeyFor(16, 0.25, 2) {
		t.Errorf("seeds %v, key %s", r.Seeds, r.OperatorKey)
	}
	arrays, other, err := npy.ReadNPZ(r.Dataset)
	if err != nil {
		t.Fatal(err)
	}
	m := rowsFor(16, 0.25)
	for name, shape := range map[string][]int{"y": {m}, "y_cal": {5, m}, "cal_levels": {5}, "x_gt": {16, 16}} {
		if !reflect.DeepEqual(arrays[name].Shape, shape) {
			t.Errorf("%s shape %v, want %v", name, arrays[name].Shape, shape)
		}
	}
	if !reflect.DeepEqual(arrays["cal_levels"].Data, []float64{0.2, 0.4, 0.6, 0.8, 1}) {
		t.Errorf("cal_levels %v", arrays["cal_levels"].Data)
	}
	for _, v := range arrays["x_gt"].Data {
		if v < 0 || v > 1 {
			t.Fatalf("x_gt value %v outside [0,1]", v)
		}
	}
	spec, err := parseSpec(other["spec.json"])
	if err != nil || spec.Size != 16 || spec.OperatorSeed != 2 || *spec.Gain != 1.3 || *spec.Bias != 0.02 || *spec.Noise != 0.01 {
		t.Fatalf("spec %+v, %v", spec, err)
	}
	img, err := png.Decode(bytes.NewReader(r.Artifacts["x_gt.png"]))
	if err != nil || img.Bounds().Dx() != 16 {
		t.Fatalf("x_gt.png: %v", err)
	}
	if r.Metrics["operator_cache"] != "miss" || r.Operator == nil {
		t.Error("generate_dataset without a cached operator should report a miss and return it")
	}
}

func TestCalibrateJob(t *testing.T) {
	t.Parallel()
	ds := genDataset(t, 16, "severe", 2)
	r, err := Run(context.Background(), Request{Type: TypeCalibrate, Params: mustParams(t, TypeCalibrate, `{"seed":9}`), Dataset: ds})
	if err != nil {
		t.Fatal(err)
	}
	var c Calibration
	if err := json.Unmarshal(r.Artifacts["theta_corrected.json"], &c); err != nil {
		t.Fatal(err)
	}
	if c.Gain != metric(t, r, "gain") || c.Bias != metric(t, r, "bias") || c.GainCI != interval(t, r, "gain_ci") || c.Resamples != 20 {
		t.Errorf("theta_corrected.json %+v disagrees with metrics %v", c, r.Metrics)
	}
	if math.Abs(c.Gain-1.4) > 0.01 || math.Abs(c.Bias-0.12) > 0.005 {
		t.Errorf("fit %v, %v; want 1.4, 0.12", c.Gain, c.Bias)
	}
	if _, ok := r.Metrics["psnr_db"]; ok {
		t.Error("calibrate reports a PSNR")
	}
	if r.Seeds["seed"] != 9 || r.Seeds["dataset_seed"] != 2 {
		t.Errorf("seeds %v", r.Seeds)
	}
}

func TestReconstructJob(t *testing.T) {
	t.Parallel()
	ds := genDataset(t, 32, "severe", 0)
	op := testOperator(t, 32)
	run := func(raw string) *Result {
		r, err := Run(context.Background(), Request{Type: TypeReconstruct, Params: mustParams(t, TypeReconstruct, raw), Dataset: ds, Operator: op})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	corrected, nominal := run(`{"gain":1.4,"bias":0.12}`), run(`{}`)
	pc, pn := metric(t, corrected, "psnr_db"), metric(t, nominal, "psnr_db")
	if pc < 28 || pc-pn < 10 {
		t.Errorf("corrected %.2f dB, nominal %.2f dB", pc, pn)
	}
	if s := metric(t, corrected, "ssim"); s <= 0.5 || s > 1 {
		t.Errorf("ssim %v", s)
	}
	a, err := npy.Decode(corrected.Artifacts["x_hat.npy"])
	if err != nil || !reflect.DeepEqual(a.Shape, []int{32, 32}) {
		t.Fatalf("x_hat.npy: %v %v", a.Shape, err)
	}
	if _, err := png.Decode(bytes.NewReader(corrected.Artifacts["x_hat.png"])); err != nil {
		t.Fatal(err)
	}
}

// TestMeasuredDataset runs on a dataset without x_gt and without the true θ,
// as measured data from elsewhere would be.
func TestMeasuredDataset(t *testing.T) {
	t.Parallel()
	arrays, other, err := npy.ReadNPZ(genDataset(t, 16, "moderate", 0))
	if err != nil {
		t.Fatal(err)
	}
	delete(arrays, "x_gt")
	other["spec.json"] = []byte(`{"size":16,"sampling":0.25,"operator_seed":7,"instrument":"bench-3"}`)
	ds, err := npy.WriteNPZ(arrays, other)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(context.Background(), Request{Type: TypeCalibrateAndReconstruct, Params: mustParams(t, TypeCalibrateAndReconstruct, `{"iterations":20}`), Dataset: ds})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"psnr_db", "psnr_oracle_db", "rho", "gain_true"} {
		if _, ok := r.Metrics[k]; ok {
			t.Errorf("metric %s reported without ground truth", k)
		}
	}
	if _, ok := r.Artifacts["x_hat_oracle.npy"]; ok {
		t.Error("oracle reconstruction without the true θ")
	}
	for _, k := range []string{"x_hat.npy", "x_hat_wrong.npy", "x_hat.png", "theta_corrected.json"} {
		if _, ok := r.Artifacts[k]; !ok {
			t.Errorf("artifact %s missing", k)
		}
	}
	if math.Abs(metric(t, r, "gain")-1.15) > 0.01 {
		t.Errorf("gain %v", r.Metrics["gain"])
	}
}

func TestMalformedDatasets(t *testing.T) {
	t.Parallel()
	good := genDataset(t, 8, "mild", 0)
	arrays, other, err := npy.ReadNPZ(good)
	if err != nil {
		t.Fatal(err)
	}
	m := rowsFor(8, 0.25)
	// variant rewrites the good dataset with one change.
	variant := func(edit func(a map[string]npy.Array, o map[string][]byte)) []byte {
		a, o := map[string]npy.Array{}, map[string][]byte{}
		for k, v := range arrays {
			a[k] = v
		}
		for k, v := range other {
			o[k] = v
		}
		edit(a, o)
		b, err := npy.WriteNPZ(a, o)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	nan := make([]float64, m)
	nan[3] = math.NaN()
	cases := map[string]struct {
		data []byte
		want string
	}{
		"nil":        {nil, "empty"},
		"garbage":    {[]byte("definitely not a zip archive"), "not a zip"},
		"truncated":  {good[:len(good)/2], "dataset"},
		"no y":       {variant(func(a map[string]npy.Array, _ map[string][]byte) { delete(a, "y") }), "missing y.npy"},
		"no y_cal":   {variant(func(a map[string]npy.Array, _ map[string][]byte) { delete(a, "y_cal") }), "missing y_cal.npy"},
		"no levels":  {variant(func(a map[string]npy.Array, _ map[string][]byte) { delete(a, "cal_levels") }), "missing cal_levels.npy"},
		"no spec":    {variant(func(_ map[string]npy.Array, o map[string][]byte) { delete(o, "spec.json") }), "missing spec.json"},
		"spec junk":  {variant(func(_ map[string]npy.Array, o map[string][]byte) { o["spec.json"] = []byte("{") }), "spec.json"},
		"spec type":  {variant(func(_ map[string]npy.Array, o map[string][]byte) { o["spec.json"] = []byte(`{"size":"8"}`) }), "size"},
		"spec lacks": {variant(func(_ map[string]npy.Array, o map[string][]byte) { o["spec.json"] = []byte(`{"size":8}`) }), `lacks "sampling"`},
		"spec size": {variant(func(_ map[string]npy.Array, o map[string][]byte) {
			o["spec.json"] = []byte(`{"size":4096,"sampling":0.25,"operator_seed":7}`)
		}), "size must be between"},
		"spec gain": {variant(func(_ map[string]npy.Array, o map[string][]byte) {
			o["spec.json"] = []byte(`{"size":8,"sampling":0.25,"operator_seed":7,"gain":1}`)
		}), "together"},
		"other size": {variant(func(_ map[string]npy.Array, o map[string][]byte) {
			o["spec.json"] = []byte(`{"size":16,"sampling":0.25,"operator_seed":7}`)
		}), "y.npy has shape"},
		"y 2-D":   {variant(func(a map[string]npy.Array, _ map[string][]byte) { a["y"] = npy.New(a["y"].Data, 1, m) }), "y.npy has shape"},
		"y short": {variant(func(a map[string]npy.Array, _ map[string][]byte) { a["y"] = npy.New(a["y"].Data[1:], m-1) }), "y.npy has shape"},
		"y NaN":   {variant(func(a map[string]npy.Array, _ map[string][]byte) { a["y"] = npy.New(nan, m) }), "NaN"},
		"y_cal K": {variant(func(a map[string]npy.Array, _ map[string][]byte) { a["y_cal"] = npy.New(a["y_cal"].Data[:4*m], 4, m) }), "y_cal.npy has shape"},
		"levels 2-D": {variant(func(a map[string]npy.Array, _ map[string][]byte) {
			a["cal_levels"] = npy.New(a["cal_levels"].Data, 5, 1)
		}), "cal_levels.npy has shape"},
		"x_gt dims": {variant(func(a map[string]npy.Array, _ map[string][]byte) { a["x_gt"] = npy.New(a["x_gt"].Data, 64) }), "x_gt.npy has shape"},
		"y bad npy": {variant(func(a map[string]npy.Array, o map[string][]byte) {
			delete(a, "y")
			o["y.npy"] = []byte("\x93NUMPY junk")
		}), "y.npy"},
		"flat levels": {variant(func(a map[string]npy.Array, _ map[string][]byte) { a["cal_levels"] = npy.New(make([]float64, 5), 5) }), "do not determine"},
	}
	for name, c := range cases {
		for _, ty := range []string{TypeCalibrate, TypeReconstruct, TypeCalibrateAndReconstruct} {
			_, err := Run(context.Background(), Request{Type: ty, Params: DefaultParams(ty), Dataset: c.data})
			if err == nil {
				if (ty == TypeReconstruct && (name == "no y_cal" || name == "no levels" || name == "flat levels")) ||
					(ty == TypeCalibrate && name == "no y") {
					continue // that job does not need the missing part
				}
				t.Errorf("%s, %s: no error", name, ty)
				continue
			}
			if !errors.Is(err, ErrInvalidParams) {
				t.Errorf("%s, %s: %v does not wrap ErrInvalidParams", name, ty, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s, %s: %q does not mention %q", name, ty, err, c.want)
			}
		}
	}
}

func FuzzParseDataset(f *testing.F) {
	b, _ := npy.WriteNPZ(map[string]npy.Array{"y": npy.New(make([]float64, 16), 16)},
		map[string][]byte{"spec.json": []byte(`{"size":8,"sampling":0.25,"operator_seed":7}`)})
	f.Add(b)
	f.Add([]byte("PK\x03\x04"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseDataset(b, true, true); err != nil && !errors.Is(err, ErrInvalidParams) {
			t.Fatalf("error does not wrap ErrInvalidParams: %v", err)
		}
	})
}

func TestRunRejectsBadRequests(t *testing.T) {
	t.Parallel()
	for _, req := range []Request{
		{Type: "train"},
		{Type: TypeGenerateDataset},
		{Type: TypeReconstruct, Params: Params{Iterations: 10}},
	} {
		if _, err := Run(context.Background(), req); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("%+v: got %v, want ErrInvalidParams", req, err)
		}
	}
}

// cancelOnWrite cancels a context at the first log line containing a marker.
type cancelOnWrite struct {
	marker string
	cancel context.CancelFunc
}

func (c *cancelOnWrite) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.marker) {
		c.cancel()
	}
	return len(p), nil
}

func TestCancellation(t *testing.T) {
	t.Parallel()
	ds := genDataset(t, 16, "moderate", 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Request{Type: TypeGenerateDataset, Params: DefaultParams(TypeGenerateDataset)}); !errors.Is(err, context.Canceled) {
		t.Errorf("already cancelled: got %v", err)
	}
	// Cancel in the middle of the first FISTA run (the log line comes at
	// iteration 50 of 150); Run must stop at the next iteration.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	var log bytes.Buffer
	w := io.MultiWriter(&log, &cancelOnWrite{marker: "iteration 50/", cancel: cancel})
	_, err := Run(ctx, Request{Type: TypeCalibrateAndReconstruct, Params: DefaultParams(TypeCalibrateAndReconstruct), Dataset: ds, Log: w})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled mid-run: got %v", err)
	}
	if strings.Contains(log.String(), "iteration 100/") {
		t.Errorf("kept iterating after cancellation:\n%s", log.String())
	}
}

func TestMetricsHelpers(t *testing.T) {
	t.Parallel()
	x := Phantom(16, 1)
	if PSNR(x, x) != maxPSNR {
		t.Errorf("PSNR of identical images = %v", PSNR(x, x))
	}
	if s := SSIM(x, x, 16, 16); math.Abs(s-1) > 1e-12 {
		t.Errorf("SSIM of identical images = %v", s)
	}
	y := make([]float64, len(x))
	for i := range y {
		y[i] = x[i] + 0.1
	}
	if p := PSNR(y, x); math.Abs(p-20) > 1e-9 {
		t.Errorf("PSNR with error 0.1 = %v, want 20", p)
	}
	if s := SSIM(Phantom(8, 2), Phantom(8, 3), 8, 8); !(s > 0 && s < 1) {
		t.Errorf("SSIM at 8×8 = %v", s)
	}
}

func TestDatasetOperatorKey(t *testing.T) {
	t.Parallel()
	k, err := DatasetOperatorKey(genDataset(t, 8, "mild", 0))
	if err != nil || k != OperatorKeyFor(8, 0.25, 7) {
		t.Fatalf("got %q, %v", k, err)
	}
	if _, err := DatasetOperatorKey([]byte("junk")); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("junk: got %v", err)
	}
}
