package cas_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/pwmesh/pwmesh/cas"
)

// wantCID builds the CID string by hand (CIDv1 0x01, raw 0x55, sha2-256 0x12,
// length 0x20, digest; multibase "b" = lowercase base32 without padding), so
// the test does not trust the library it checks.
func wantCID(b []byte) string {
	d := sha256.Sum256(b)
	raw := append([]byte{0x01, 0x55, 0x12, 0x20}, d[:]...)
	return "b" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw))
}

func TestSumBytes(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "hello world", strings.Repeat("x", 1<<20)} {
		r := cas.SumBytes([]byte(in))
		d := sha256.Sum256([]byte(in))
		if got, want := r.CID.String(), wantCID([]byte(in)); got != want {
			t.Errorf("cid = %s, want %s", got, want)
		}
		if r.SHA256 != hex.EncodeToString(d[:]) || r.Size != int64(len(in)) {
			t.Errorf("ref = %+v", r)
		}
		s, err := cas.Sum(strings.NewReader(in))
		if err != nil || !s.CID.Equals(r.CID) || s.SHA256 != r.SHA256 || s.Size != r.Size {
			t.Errorf("Sum = %+v, %v; SumBytes = %+v", s, err, r)
		}
	}
	if got := cas.SumBytes([]byte("hello world")).CID.String(); got != "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e" {
		t.Errorf("known cid = %s", got)
	}
}

func TestParseCID(t *testing.T) {
	t.Parallel()
	ref := cas.SumBytes([]byte("pwmesh"))
	c, err := cas.ParseCID(ref.CID.String())
	if err != nil || !c.Equals(ref.CID) {
		t.Fatalf("round trip: %v, %v", c, err)
	}
	b58, _ := ref.CID.StringOfBase('z')
	if c, err := cas.ParseCID(b58); err != nil || !c.Equals(ref.CID) {
		t.Errorf("base58 form: %v, %v", c, err)
	}
	d := sha256.Sum256([]byte("pwmesh"))
	sha, _ := mh.Encode(d[:], mh.SHA2_256)
	blake, _ := mh.Sum([]byte("pwmesh"), mh.SHA2_512, -1)
	bad := []string{
		"", "b", "bafk", "not a cid", "\x00\xff", "/ipfs/" + ref.CID.String(),
		cid.NewCidV0(sha).String(),                    // v0
		cid.NewCidV1(cid.DagProtobuf, sha).String(),   // other codec
		cid.NewCidV1(cid.Raw, blake).String(),         // other hash
		ref.CID.String()[:len(ref.CID.String())-1],    // truncated
		strings.ToUpper(ref.CID.String()[:1]) + "zzz", // junk
	}
	for _, s := range bad {
		if _, err := cas.ParseCID(s); !errors.Is(err, cas.ErrInvalidCID) {
			t.Errorf("ParseCID(%q) = %v, want ErrInvalidCID", s, err)
		}
	}
}

func TestCIDFromSHA256(t *testing.T) {
	t.Parallel()
	ref := cas.SumBytes([]byte("abc"))
	for _, s := range []string{ref.SHA256, strings.ToUpper(ref.SHA256)} {
		c, err := cas.CIDFromSHA256(s)
		if err != nil || !c.Equals(ref.CID) {
			t.Errorf("CIDFromSHA256(%s) = %v, %v", s, c, err)
		}
	}
	for _, s := range []string{"", "abc", ref.SHA256 + "00", "zz" + ref.SHA256[2:]} {
		if _, err := cas.CIDFromSHA256(s); !errors.Is(err, cas.ErrInvalidCID) {
			t.Errorf("CIDFromSHA256(%q) = %v", s, err)
		}
	}
	if h, err := cas.SHA256Hex(ref.CID); err != nil || h != ref.SHA256 {
		t.Errorf("SHA256Hex = %s, %v", h, err)
	}
}

func TestRefJSON(t *testing.T) {
	t.Parallel()
	ref := cas.SumBytes([]byte("json"))
	b, err := json.Marshal(ref)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cid":"` + ref.CID.String() + `","sha256":"` + ref.SHA256 + `","size":4}`
	if string(b) != want {
		t.Fatalf("marshal = %s, want %s", b, want)
	}
	var got cas.Ref
	if err := json.Unmarshal(b, &got); err != nil || !got.CID.Equals(ref.CID) || got.SHA256 != ref.SHA256 || got.Size != 4 {
		t.Fatalf("unmarshal = %+v, %v", got, err)
	}
	// Only the sha256: the cid is derived.
	var fromSHA cas.Ref
	if err := json.Unmarshal([]byte(`{"sha256":"`+ref.SHA256+`","size":4}`), &fromSHA); err != nil || !fromSHA.CID.Equals(ref.CID) {
		t.Errorf("from sha256 = %+v, %v", fromSHA, err)
	}
	var zero cas.Ref
	if b, err := json.Marshal(zero); err != nil || string(b) != `{"cid":"","sha256":"","size":0}` {
		t.Errorf("zero marshal = %s, %v", b, err)
	}
	if err := json.Unmarshal([]byte(`{"cid":"","sha256":"","size":0}`), &zero); err != nil || zero.CID.Defined() {
		t.Errorf("zero unmarshal = %+v, %v", zero, err)
	}
	other := cas.SumBytes([]byte("other"))
	for _, in := range []string{
		`{"cid":"junk","sha256":"","size":1}`,
		`{"cid":"` + ref.CID.String() + `","sha256":"` + other.SHA256 + `","size":4}`,
		`{"cid":"` + ref.CID.String() + `","sha256":"","size":-1}`,
		`{"cid":"","sha256":"","size":3}`,
		`[]`,
	} {
		var r cas.Ref
		if err := json.Unmarshal([]byte(in), &r); err == nil {
			t.Errorf("Unmarshal(%s) succeeded: %+v", in, r)
		}
	}
}

func TestHasher(t *testing.T) {
	t.Parallel()
	h := cas.NewHasher()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	for i := 0; i < len(data); i += 333 {
		h.Write(data[i:min(i+333, len(data))])
	}
	if got, want := h.Ref(), cas.SumBytes(data); !got.CID.Equals(want.CID) || got.Size != want.Size {
		t.Errorf("hasher = %+v, want %+v", got, want)
	}
}

func FuzzParseCID(f *testing.F) {
	f.Add(cas.SumBytes(nil).CID.String())
	f.Add("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG")
	f.Add("zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := cas.ParseCID(s)
		if err != nil {
			if !errors.Is(err, cas.ErrInvalidCID) {
				t.Fatalf("error %v does not wrap ErrInvalidCID", err)
			}
			return
		}
		again, err := cas.ParseCID(c.String())
		if err != nil || !again.Equals(c) {
			t.Fatalf("re-parse of %s: %v", c, err)
		}
	})
}
