package mirror

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/castest"
)

func TestStoreFile(t *testing.T) {
	t.Parallel()
	castest.TestStore(t, func(t *testing.T) cas.Store { return open(t, fileURL(t), Options{}) })
}

func TestStoreS3(t *testing.T) {
	t.Parallel()
	castest.TestStore(t, func(t *testing.T) cas.Store { return open(t, startS3(t, nil), Options{}) })
}

func TestStoreGCS(t *testing.T) {
	t.Parallel()
	castest.TestStore(t, func(t *testing.T) cas.Store { return open(t, gcsURL(startGCS(t, nil)), Options{}) })
}

// TestStoreGCSEmulatorEnv opens a plain gs:// URL with STORAGE_EMULATOR_HOST
// set, which gcsblob's own opener honours (host:port only). Not parallel:
// it sets the environment.
func TestStoreGCSEmulatorEnv(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", startGCS(t, nil))
	s := open(t, "gs://"+testBucket, Options{})
	roundTrip(t, s, []byte("through the emulator variable"))
}

// backends opens one fresh store per backend, each with opts.
func backends(t *testing.T, opts Options) map[string]*Store {
	t.Helper()
	return map[string]*Store{
		"file": open(t, fileURL(t), opts),
		"s3":   open(t, startS3(t, nil), opts),
		"gcs":  open(t, gcsURL(startGCS(t, nil)), opts),
	}
}

func roundTrip(t *testing.T, s *Store, data []byte) cas.Ref {
	t.Helper()
	ref, err := s.Put(t.Context(), bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if want := cas.SumBytes(data); !ref.CID.Equals(want.CID) || ref.Size != want.Size {
		t.Fatalf("Put = %+v, want %+v", ref, want)
	}
	f, err := s.Open(t.Context(), ref.CID)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer f.Close()
	got, err := cas.Sum(f)
	if err != nil || !got.CID.Equals(ref.CID) {
		t.Fatalf("read back %+v, %v; want %s", got, err, ref.CID)
	}
	return ref
}

// keys lists every key in s's bucket, prefix or not.
func keys(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	it := s.b.List(nil)
	for {
		obj, err := it.Next(t.Context())
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("list bucket: %v", err)
		}
		out = append(out, obj.Key)
	}
}

func randomBytes(seed byte, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

const partSize = 5 << 20 // S3's smallest part

// TestMultipart round-trips objects larger than PartSize through S3 and GCS
// by both Put and PutExpected and checks that they went in parts.
func TestMultipart(t *testing.T) {
	t.Parallel()
	data := randomBytes(1, 12<<20)
	want := cas.SumBytes(data)
	for _, name := range []string{"s3", "gcs"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var log requestLog
			var s *Store
			var method, partMarker string // how a part travels
			if name == "s3" {
				s = open(t, startS3(t, log.wrap), Options{PartSize: partSize, Concurrency: 2})
				method, partMarker = "PUT", "partNumber="
			} else {
				// The Go client sends resumable-upload chunks as POSTs.
				s = open(t, gcsURL(startGCS(t, log.wrap)), Options{PartSize: partSize})
				method, partMarker = "POST", "upload_id="
			}
			roundTrip(t, s, data)
			putParts := log.count(method, partMarker)
			if putParts < 3 {
				t.Errorf("Put sent %d part requests, want ≥ 3 (12 MiB in 5 MiB parts)", putParts)
			}
			if err := s.Delete(t.Context(), want.CID); err != nil {
				t.Fatal(err)
			}
			ref, err := s.PutExpected(t.Context(), bytes.NewReader(data), want.CID)
			if err != nil || ref.Size != want.Size {
				t.Fatalf("PutExpected = %+v, %v", ref, err)
			}
			if n := log.count(method, partMarker) - putParts; n < 3 {
				t.Errorf("PutExpected sent %d part requests, want ≥ 3", n)
			}
			if err := s.Verify(t.Context(), want.CID); err != nil {
				t.Errorf("Verify: %v", err)
			}
			if got := keys(t, s); !slices.Equal(got, []string{s.key(want.CID)}) {
				t.Errorf("bucket holds %q, want only the object", got)
			}
		})
	}
}

// failAfter yields n bytes of data and then fails.
type failAfter struct {
	r   io.Reader
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, f.err
	}
	return n, err
}

// TestPutExpectedAborts: content that does not hash to the CID, or a reader
// that fails midway, leaves nothing in the bucket: not the CID's key, no
// temporary object and, on S3, no multipart upload in progress. Sizes cover
// a single-request upload and a multipart one.
func TestPutExpectedAborts(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	for name, s := range backends(t, Options{PartSize: partSize}) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, size := range []int{1000, 11 << 20} {
				sent := randomBytes(2, size)
				want := cas.SumBytes(append(slices.Clone(sent[:size-1]), sent[size-1]^1)).CID
				if _, err := s.PutExpected(t.Context(), bytes.NewReader(sent), want); !errors.Is(err, cas.ErrCorrupt) {
					t.Errorf("PutExpected(%d bytes, wrong cid) = %v, want ErrCorrupt", size, err)
				}
				right := cas.SumBytes(sent).CID
				r := &failAfter{r: bytes.NewReader(sent[:size-1]), err: boom}
				if _, err := s.PutExpected(t.Context(), r, right); !errors.Is(err, boom) {
					t.Errorf("PutExpected(%d bytes, failing reader) = %v, want boom", size, err)
				}
				if _, err := s.b.Attributes(t.Context(), s.key(want)); !errors.Is(notFound(err), cas.ErrNotFound) {
					t.Errorf("%d bytes: key of refused cid: Attributes = %v, want not found", size, err)
				}
				if got := keys(t, s); len(got) != 0 {
					t.Errorf("%d bytes: bucket holds %q after refused puts", size, got)
				}
			}
			if s.s3 != nil {
				out, err := s.s3.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket)})
				if err != nil {
					t.Fatal(err)
				}
				if len(out.Uploads) != 0 {
					t.Errorf("%d multipart uploads left in progress", len(out.Uploads))
				}
			}
		})
	}
}

// TestPutCleansTemp: Put leaves only the object, on every backend, also
// when the object was already there.
func TestPutCleansTemp(t *testing.T) {
	t.Parallel()
	for name, s := range backends(t, Options{}) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ref := roundTrip(t, s, []byte("temp goes"))
			roundTrip(t, s, []byte("temp goes"))
			if got := keys(t, s); !slices.Equal(got, []string{"pwmesh/blocks/" + ref.CID.String()}) {
				t.Errorf("bucket holds %q", got)
			}
		})
	}
}

// TestPutStreamsPastCopyLimit: an object larger than the server-side copy
// limit (5 GiB on S3; lowered here) is published by streaming it again.
func TestPutStreamsPastCopyLimit(t *testing.T) {
	t.Parallel()
	var log requestLog
	s := open(t, startS3(t, log.wrap), Options{})
	s.copyLimit = 10
	ref := roundTrip(t, s, []byte("larger than ten bytes"))
	if n := log.count("PUT", "x-id=CopyObject"); n != 0 {
		t.Errorf("%d CopyObject requests, want none", n)
	}
	if err := s.Verify(t.Context(), ref.CID); err != nil {
		t.Error(err)
	}
	if got := keys(t, s); len(got) != 1 {
		t.Errorf("bucket holds %q", got)
	}
}

// TestOpenReadsRanges: Seek then Read fetches from the offset on, not the
// whole object, and seeking alone fetches nothing.
func TestOpenReadsRanges(t *testing.T) {
	t.Parallel()
	var log requestLog
	s := open(t, startS3(t, log.wrap), Options{})
	data := randomBytes(3, 100_000)
	ref := roundTrip(t, s, data)
	gets := log.count("GET", "")
	f, err := s.Open(t.Context(), ref.CID)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, off := range []int64{0, 99_999, 50} {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
	}
	if n := log.count("GET", ""); n != gets {
		t.Errorf("seeking sent %d GETs", n-gets)
	}
	if _, err := f.Seek(54_321, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(f, buf); err != nil || !bytes.Equal(buf, data[54_321:55_321]) {
		t.Fatalf("read after seek: %v", err)
	}
	if n := log.count("GET", "bytes=54321-99999"); n != 1 {
		t.Errorf("%d GETs of range 54321-99999, want 1; requests: %q", n, log.reqs)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	if n, err := f.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("Read at end = %d, %v", n, err)
	}
}

// TestListIgnoresStrangers: keys under blocks/ that are not canonical CIDs,
// and objects outside the prefix, are not listed.
func TestListIgnoresStrangers(t *testing.T) {
	t.Parallel()
	for name, s := range backends(t, Options{Prefix: "p"}) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ref := roundTrip(t, s, []byte("listed"))
			other := cas.SumBytes([]byte("other")).CID
			for _, k := range []string{
				"p/blocks/not-a-cid",
				"p/blocks/" + strings.ToUpper(other.String()),
				"p/blocks/" + other.String() + "/nested",
				"p/tmp/" + other.String(),
				"elsewhere/blocks/" + other.String(),
			} {
				if err := s.b.WriteAll(t.Context(), k, []byte("other"), &blob.WriterOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			if err := s.List(t.Context(), func(r cas.Ref) error { got = append(got, r.CID.String()); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, []string{ref.CID.String()}) {
				t.Errorf("List = %q, want only %s", got, ref.CID)
			}
		})
	}
}

func TestOpenURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"ftp://host/x",
		"bucket-without-scheme",
		"file://relative/dir",
		"s3://",
		"s3://b?max_attempts=0",
		"s3://b?no_such_param=1",
		"s3://b?region=us-east-1&ssetype=rot13",
		"gs://b?emulator_host=127.0.0.1:1&anonymous=true",
	} {
		if s, err := Open(t.Context(), u, Options{}); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", u)
		} else if !strings.HasPrefix(err.Error(), "mirror: open") {
			t.Errorf("Open(%q) = %v, want a mirror: open error", u, err)
		}
	}
	if _, err := Open(t.Context(), "s3://b?region=us-east-1", Options{PartSize: 1 << 20}); err == nil {
		t.Error("Open accepted a 1 MiB PartSize for S3")
	}
	s := open(t, "s3://AKIDEXAMPLE:wJalrXUtnFEMI@bucket?region=us-east-1&endpoint=http://127.0.0.1:1", Options{})
	if str := s.String(); strings.Contains(str, "AKIDEXAMPLE") || strings.Contains(str, "wJalr") || !strings.HasPrefix(str, "s3://bucket?") {
		t.Errorf("String() = %q, want the URL without credentials", str)
	}
}

// TestS3Anonymous: anonymous=true also works against gofakes3.
func TestS3Anonymous(t *testing.T) {
	t.Parallel()
	u := startS3(t, nil)
	u = "s3://" + strings.TrimPrefix(u, "s3://test-key:test-secret@") + "&anonymous=true"
	roundTrip(t, open(t, u, Options{}), []byte("unsigned"))
}
