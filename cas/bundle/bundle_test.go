package bundle_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/bundle"
)

func sampleManifest() bundle.Manifest {
	return bundle.Manifest{
		SpecID:    "cassi-spec-7",
		Timestamp: "2025-03-01T12:00:00Z",
		Provenance: bundle.Provenance{
			GitHash: "0123abcd", Seeds: map[string]int64{"numpy": 42, "torch": 7},
			Platform: "linux-x86_64", PWMVersion: "0.3.1",
		},
		Metrics:   map[string]any{"psnr_db": 31.5, "ssim": 0.91, "runtime_s": 12.25},
		Artifacts: map[string]string{"x_hat": "x_hat.npy"},
		Execution: bundle.Execution{
			JobID: "job-1", JobType: "reconstruct", Tenant: "acme", Node: "n1",
			GPUs: []string{"GPU-abc"}, Executor: "process", Attempts: 1, FencingToken: 9,
			StartedAt:  time.Date(2025, 3, 1, 13, 0, 0, 0, time.FixedZone("CET", 3600)),
			FinishedAt: time.Date(2025, 3, 1, 12, 5, 0, 0, time.UTC),
		},
	}
}

func sampleFiles() map[string][]byte {
	return map[string][]byte{
		"x_hat.npy":          []byte("\x93NUMPY\x01\x00fake array payload"),
		"x_hat.png":          []byte("\x89PNG\r\n\x1a\nfake png"),
		"calib/gain.npy":     []byte("\x93NUMPYgain"),
		"logs/stdout.txt":    []byte("hello from the workload\n"),
		"empty.bin":          nil,
		"deep/a/b/c/d/e.txt": bytes.Repeat([]byte("e"), 1500),
	}
}

func build(t testing.TB) bundle.Built {
	t.Helper()
	b, err := bundle.Build(sampleManifest(), sampleFiles())
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return b
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	b := build(t)
	files := sampleFiles()

	m := b.Manifest
	if m.Version != bundle.Version {
		t.Errorf("version = %q", m.Version)
	}
	if m.Artifacts["x_hat"] != "x_hat.npy" || m.Artifacts["x_hat.png"] != "x_hat.png" || len(m.Artifacts) != len(files) {
		t.Errorf("artifacts = %v", m.Artifacts)
	}
	for name, p := range m.Artifacts {
		sum := sha256.Sum256(files[p])
		if m.Hashes[name] != "sha256:"+hex.EncodeToString(sum[:]) {
			t.Errorf("hashes[%s] = %s", name, m.Hashes[name])
		}
	}
	if !m.Execution.StartedAt.Equal(sampleManifest().Execution.StartedAt) || m.Execution.StartedAt.Location() != time.UTC {
		t.Errorf("started_at = %v, want the same instant in UTC", m.Execution.StartedAt)
	}

	rep, err := bundle.Verify(bytes.NewReader(b.Data))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got, want := jsonOf(t, rep.Manifest), jsonOf(t, m); got != want {
		t.Errorf("verified manifest\n got %s\nwant %s", got, want)
	}
	if rep.Files != len(files) {
		t.Errorf("Files = %d, want %d", rep.Files, len(files))
	}
	if want := cas.SumBytes(b.Data); !rep.Ref.CID.Equals(want.CID) || rep.Ref != b.Ref || rep.Ref.Size != int64(len(b.Data)) {
		t.Errorf("Ref = %+v, Build ref %+v, want %+v", rep.Ref, b.Ref, want)
	}
	for p, want := range files {
		got, err := bundle.ReadFile(bytes.NewReader(b.Data), p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("ReadFile(%s) = %q, %v", p, got, err)
		}
	}
	rm, err := bundle.ReadManifest(bytes.NewReader(b.Data))
	if err != nil || jsonOf(t, rm) != jsonOf(t, m) {
		t.Errorf("ReadManifest = %v", err)
	}
	raw, err := bundle.ReadFile(bytes.NewReader(b.Data), bundle.ManifestName)
	if err != nil || !bytes.Contains(raw, []byte("\n  \"version\": \"0.3.0\"")) {
		t.Errorf("manifest is not indented JSON: %s, %v", raw, err)
	}
}

func TestWriteDoesNotModifyInputs(t *testing.T) {
	t.Parallel()
	m := sampleManifest()
	if _, err := bundle.Build(m, sampleFiles()); err != nil {
		t.Fatal(err)
	}
	if len(m.Artifacts) != 1 || m.Hashes != nil {
		t.Errorf("caller's manifest changed: %v %v", m.Artifacts, m.Hashes)
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	first := build(t).Data
	for range 10 {
		// Fresh maps each time, filled in reverse order.
		files := map[string][]byte{}
		src := sampleFiles()
		keys := make([]string, 0, len(src))
		for k := range src {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		slices.Reverse(keys)
		for _, k := range keys {
			files[k] = src[k]
		}
		m := sampleManifest()
		m.Metrics = map[string]any{"runtime_s": 12.25, "ssim": 0.91, "psnr_db": 31.5}
		b, err := bundle.Build(m, files)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Data, first) {
			t.Fatal("same inputs gave different bytes")
		}
	}
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	b := build(t)
	tr := tar.NewReader(bytes.NewReader(b.Data))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Typeflag != tar.TypeReg || h.Mode != 0o644 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" ||
			!h.ModTime.Equal(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) || h.Format != tar.FormatUSTAR {
			t.Errorf("header %+v", h)
		}
	}
	if names[0] != bundle.ManifestName {
		t.Fatalf("first entry %q", names[0])
	}
	if !slices.IsSorted(names[1:]) || len(names) != len(sampleFiles())+1 {
		t.Errorf("entries not sorted: %v", names)
	}
}

func TestSHA256MatchesSha256sum(t *testing.T) {
	t.Parallel()
	b := build(t)
	sum := sha256.Sum256(b.Data)
	if b.Ref.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("Ref.SHA256 = %s", b.Ref.SHA256)
	}
	if !b.Ref.CID.Equals(cas.SumBytes(b.Data).CID) {
		t.Error("CID differs from cas.SumBytes")
	}
	if c, err := cas.CIDFromSHA256(b.Ref.SHA256); err != nil || !c.Equals(b.Ref.CID) {
		t.Error("CID does not carry the sha256")
	}
	bin, err := exec.LookPath("sha256sum")
	if err != nil {
		t.Skip("sha256sum not installed")
	}
	p := filepath.Join(t.TempDir(), "bundle.tar")
	if err := os.WriteFile(p, b.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, p).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out))[0]; got != b.Ref.SHA256 {
		t.Errorf("sha256sum = %s, Ref.SHA256 = %s", got, b.Ref.SHA256)
	}
}

func TestPythonTarfile(t *testing.T) {
	t.Parallel()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	p := filepath.Join(t.TempDir(), "bundle.tar")
	if err := os.WriteFile(p, build(t).Data, 0o644); err != nil {
		t.Fatal(err)
	}
	script := `import sys, tarfile, json
with tarfile.open(sys.argv[1]) as tf:
    names = tf.getnames()
    m = json.load(tf.extractfile(names[0]))
print(json.dumps({"first": names[0], "n": len(names), "version": m["version"]}))`
	out, err := exec.Command(py, "-c", script, p).Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var got struct {
		First, Version string
		N              int
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python said %s: %v", out, err)
	}
	if got.First != bundle.ManifestName || got.Version != bundle.Version || got.N != len(sampleFiles())+1 {
		t.Errorf("python tarfile saw %+v", got)
	}
}

// entry is one member of a hand-made tar.
type entry struct {
	name string
	typ  byte
	body []byte
}

func rawTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Size: int64(len(e.body))}
		if typ == tar.TypeSymlink {
			h.Linkname, h.Size = "/etc/passwd", 0
		}
		if typ == tar.TypeDir {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// members returns the manifest and files of the sample bundle as entries.
func members(t *testing.T) (manifest entry, files []entry) {
	t.Helper()
	b := build(t)
	raw, err := bundle.ReadFile(bytes.NewReader(b.Data), bundle.ManifestName)
	if err != nil {
		t.Fatal(err)
	}
	src := sampleFiles()
	for _, p := range slices.Sorted(maps.Keys(src)) {
		files = append(files, entry{name: p, body: src[p]})
	}
	return entry{name: bundle.ManifestName, body: raw}, files
}

func wantInvalid(t *testing.T, data []byte, mention string) {
	t.Helper()
	_, err := bundle.Verify(bytes.NewReader(data))
	if !errors.Is(err, bundle.ErrInvalid) {
		t.Fatalf("Verify = %v, want ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), mention) {
		t.Errorf("error %q does not mention %q", err, mention)
	}
}

func TestVerifyTamperedByte(t *testing.T) {
	t.Parallel()
	data := bytes.Clone(build(t).Data)
	i := bytes.Index(data, []byte("hello from the workload"))
	data[i] ^= 0x20
	wantInvalid(t, data, "logs/stdout.txt: sha256")
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	man, files := members(t)
	extra := entry{name: "extra.txt", body: []byte("x")}
	withFiles := func(es ...entry) []byte { return rawTar(t, append([]entry{man}, es...)...) }
	cases := []struct {
		name, mention string
		data          []byte
	}{
		{"valid hand-made tar", "", withFiles(files...)},
		{"missing file", "x_hat.png: listed in the manifest", withFiles(slices.Delete(slices.Clone(files), 5, 6)...)},
		{"extra file", "extra.txt: not listed", withFiles(append(slices.Clone(files), extra)...)},
		{"duplicate file", "empty.bin: duplicate", withFiles(append(slices.Clone(files), files[2])...)},
		{"duplicate manifest", "duplicate", withFiles(append(slices.Clone(files), man)...)},
		{"manifest not first", "first entry is \"calib/gain.npy\"", rawTar(t, append(slices.Clone(files), man)...)},
		{"no manifest", "first entry", rawTar(t, files...)},
		{"parent path", "..", withFiles(entry{name: "../evil", body: []byte("x")})},
		{"absolute path", "absolute", withFiles(entry{name: "/etc/evil", body: []byte("x")})},
		{"backslash", "backslash", withFiles(entry{name: `a\b`, body: []byte("x")})},
		{"control char", "control", withFiles(entry{name: "a\x1bb", body: []byte("x")})},
		{"symlink", "not a regular file", withFiles(entry{name: "link", typ: tar.TypeSymlink})},
		{"bad dir", "..", withFiles(entry{name: "../d/", typ: tar.TypeDir})},
		{"empty input", "empty archive", nil},
		{"garbage", "not a tar", []byte("this is not a tar archive at all, just some text that goes on")},
		{"garbage block", "not a tar", bytes.Repeat([]byte{0xA5}, 2048)},
		{"manifest not json", "runbundle_manifest.json", rawTar(t, entry{name: bundle.ManifestName, body: []byte("{nope")})},
		{"wrong version", "version", rawTar(t, entry{name: bundle.ManifestName, body: []byte(`{"version":"9.9"}`)})},
		{"hash without artifact", "has no artifact", rawTar(t, entry{name: bundle.ManifestName, body: []byte(`{"version":"0.3.0","hashes":{"a":"sha256:00"}}`)})},
		{"artifact without hash", "has no hash", rawTar(t, entry{name: bundle.ManifestName, body: []byte(`{"version":"0.3.0","artifacts":{"a":"a"}}`)})},
		{"bad hash form", "is not \"sha256:", rawTar(t, entry{name: bundle.ManifestName, body: []byte(`{"version":"0.3.0","artifacts":{"a":"a"},"hashes":{"a":"md5:00"}}`)})},
		{"unsafe artifact path", "artifact \"a\"", rawTar(t, entry{name: bundle.ManifestName, body: []byte(`{"version":"0.3.0","artifacts":{"a":"../a"},"hashes":{"a":"sha256:` + strings.Repeat("0", 64) + `"}}`)})},
		{"trailing junk", "after the end", append(withFiles(files...), []byte("junk")...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.mention == "" {
				if _, err := bundle.Verify(bytes.NewReader(tc.data)); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			wantInvalid(t, tc.data, tc.mention)
		})
	}
}

func TestVerifyTrailingZeros(t *testing.T) {
	t.Parallel()
	// GNU tar pads archives to 10 KiB records with zeros; that is accepted.
	data := build(t).Data
	padded := append(bytes.Clone(data), make([]byte, 10240-len(data)%10240)...)
	rep, err := bundle.Verify(bytes.NewReader(padded))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ref.Size != int64(len(padded)) {
		t.Errorf("Ref.Size = %d, want the whole stream (%d)", rep.Ref.Size, len(padded))
	}
}

func TestVerifyTruncated(t *testing.T) {
	t.Parallel()
	data := build(t).Data
	for n := range len(data) {
		if _, err := bundle.Verify(bytes.NewReader(data[:n])); !errors.Is(err, bundle.ErrInvalid) {
			t.Fatalf("truncated to %d of %d bytes: Verify = %v, want ErrInvalid", n, len(data), err)
		}
	}
}

func TestVerifyReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk on fire")
	data := build(t).Data
	r := io.MultiReader(bytes.NewReader(data[:700]), iotest.ErrReader(boom))
	_, err := bundle.Verify(r)
	if !errors.Is(err, boom) || errors.Is(err, bundle.ErrInvalid) {
		t.Errorf("Verify = %v, want the read error and not ErrInvalid", err)
	}
}

func TestWriteRejects(t *testing.T) {
	t.Parallel()
	file := func(p string) map[string][]byte { return map[string][]byte{p: []byte("x")} }
	withArtifacts := func(a map[string]string) bundle.Manifest {
		m := sampleManifest()
		m.Artifacts = a
		return m
	}
	nan := sampleManifest()
	nan.Metrics = map[string]any{"psnr_db": math.NaN()}
	badVersion := sampleManifest()
	badVersion.Version = "0.2.0"
	badTime := sampleManifest()
	badTime.Timestamp = "yesterday"
	cases := []struct {
		name  string
		m     bundle.Manifest
		files map[string][]byte
	}{
		{"empty path", bundle.Manifest{}, file("")},
		{"absolute", bundle.Manifest{}, file("/abs")},
		{"dotdot", bundle.Manifest{}, file("a/../../b")},
		{"dot", bundle.Manifest{}, file("./a")},
		{"double slash", bundle.Manifest{}, file("a//b")},
		{"trailing slash", bundle.Manifest{}, file("a/")},
		{"backslash", bundle.Manifest{}, file(`a\b`)},
		{"colon", bundle.Manifest{}, file("c:x")},
		{"newline", bundle.Manifest{}, file("a\nb")},
		{"nul", bundle.Manifest{}, file("a\x00b")},
		{"bad utf8", bundle.Manifest{}, file("a\xffb")},
		{"manifest name", bundle.Manifest{}, file(bundle.ManifestName)},
		{"file and dir", bundle.Manifest{}, map[string][]byte{"a": nil, "a/b": nil}},
		{"artifact of missing file", withArtifacts(map[string]string{"y": "y.npy"}), file("x.npy")},
		{"two names one path", withArtifacts(map[string]string{"x": "x.npy", "y": "x.npy"}), file("x.npy")},
		{"name taken", withArtifacts(map[string]string{"b": "a"}), map[string][]byte{"a": nil, "b": nil}},
		{"empty name", withArtifacts(map[string]string{"": "a"}), file("a")},
		{"nan metric", nan, file("a")},
		{"version", badVersion, file("a")},
		{"timestamp", badTime, file("a")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if _, err := bundle.Write(&buf, tc.m, tc.files); !errors.Is(err, bundle.ErrInvalid) {
				t.Errorf("Write = %v, want ErrInvalid", err)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes before failing", buf.Len())
			}
		})
	}
}

func TestWriteNoFiles(t *testing.T) {
	t.Parallel()
	b, err := bundle.Build(bundle.Manifest{SpecID: "s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := bundle.Verify(bytes.NewReader(b.Data))
	if err != nil || rep.Files != 0 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	raw, _ := bundle.ReadFile(bytes.NewReader(b.Data), bundle.ManifestName)
	for _, want := range []string{`"metrics": {}`, `"artifacts": {}`, `"seeds": {}`, `"gpus": []`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("manifest lacks %s:\n%s", want, raw)
		}
	}
}

func TestReadFileNotFound(t *testing.T) {
	t.Parallel()
	_, err := bundle.ReadFile(bytes.NewReader(build(t).Data), "nope.npy")
	if !errors.Is(err, bundle.ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile = %v, want ErrNotFound", err)
	}
	if _, err := bundle.ReadFile(strings.NewReader("garbage garbage"), "x"); !errors.Is(err, bundle.ErrInvalid) {
		t.Errorf("ReadFile(garbage) = %v, want ErrInvalid", err)
	}
}

func FuzzVerify(f *testing.F) {
	valid := build(f).Data
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Add([]byte("not a tar"))
	f.Add(rawTar(f, entry{name: bundle.ManifestName, body: []byte(`{"version":"0.3.0","artifacts":{"a":"a"},"hashes":{"a":"sha256:` + strings.Repeat("0", 64) + `"}}`)}, entry{name: "a"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := bundle.Verify(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, bundle.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if want := cas.SumBytes(data); rep.Ref != want {
			t.Fatalf("Ref = %+v, want %+v", rep.Ref, want)
		}
		for _, p := range rep.Manifest.Artifacts {
			if _, err := bundle.ReadFile(bytes.NewReader(data), p); err != nil {
				t.Fatalf("verified bundle, but ReadFile(%s): %v", p, err)
			}
		}
	})
}
