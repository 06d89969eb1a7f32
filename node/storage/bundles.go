package storage

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/scheduler"
)

// PutBundle seals a tenant's RunBundle (r yields the plain tar) with the
// tenant's newest data key and stores it on this node's disk; Keep(stored,
// scheduler.BlobBundle) then makes it durable. The job's reference names
// the stored object (CID: what the index, replication, the durability rule
// and retention track) and the plain tar (SHA256 and Size: what a download
// yields and sha256sum checks).
//
// Sealing draws a random salt, so two equal tars would be two objects; a
// RunBundle's manifest names its job, fencing token and times, so no two
// bundles are equal and nothing is lost by not looking for one.
func (s *Storage) PutBundle(ctx context.Context, tenant string, r io.Reader) (scheduler.BundleRef, cas.Ref, error) {
	o, err := s.putSealed(ctx, tenant, r)
	if err != nil {
		return scheduler.BundleRef{}, cas.Ref{}, fmt.Errorf("storage: store runbundle: %w", err)
	}
	return scheduler.BundleRef{CID: o.stored.CID.String(), SHA256: o.plain.SHA256, Size: o.plain.Size}, o.stored, nil
}

// BundleSealed reports whether b names a sealed RunBundle. A bundle stored
// before bundles were sealed is kept as its plain tar, so its CID is the
// CID of its SHA-256; a sealed one's CID hashes the sealed bytes instead.
func BundleSealed(b scheduler.BundleRef) (bool, error) {
	c, err := cas.ParseCID(b.CID)
	if err != nil {
		return false, err
	}
	sum, err := cas.SHA256Hex(c)
	if err != nil {
		return false, err
	}
	return !strings.EqualFold(sum, b.SHA256), nil
}

// OpenBundle returns the plain tar of tenant's RunBundle b; it seeks (an
// io.ReadSeekCloser). A sealed one is opened with the tenant's data key
// named in its header (any version the tenant holds), every segment
// authenticated before it is returned, and a seek reads only the segment
// it lands in; read from the start, the tar is checked against b's SHA-256
// and size before its last bytes are returned (an error wrapping
// cas.ErrCorrupt otherwise). A bundle stored in clear before bundles were
// sealed is returned as stored; the store re-hashed it against its CID.
func (s *Storage) OpenBundle(ctx context.Context, tenant string, b scheduler.BundleRef) (io.ReadSeekCloser, error) {
	sealed, err := BundleSealed(b)
	if err != nil {
		return nil, fmt.Errorf("storage: runbundle %s: %w", b.CID, err)
	}
	c, _ := cas.ParseCID(b.CID) // parsed above
	if !sealed {
		return s.store.Open(ctx, c)
	}
	rc, err := s.openSealed(ctx, tenant, c)
	if err != nil {
		return nil, err
	}
	return &checkedPlain{rc: rc, h: cas.NewHasher(), want: b}, nil
}

// checkedPlain hashes what it returns while reads run on from the start
// and, before the byte that completes the size the job's reference names,
// refuses a plaintext other than the one the reference names: a sealed
// object of the same tenant under another job's name is never served whole
// as this one.
type checkedPlain struct {
	rc     io.ReadSeekCloser
	h      *cas.Hasher
	want   scheduler.BundleRef
	pos    int64 // where the next Read reads
	hashed int64 // bytes hashed, from the start
	err    error
}

func (p *checkedPlain) Seek(off int64, whence int) (int64, error) {
	n, err := p.rc.Seek(off, whence)
	if err == nil {
		p.pos = n
	}
	return n, err
}

func (p *checkedPlain) Read(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.rc.Read(b)
	if p.pos == p.hashed && p.hashed < p.want.Size+1 {
		p.h.Write(b[:n])
		p.hashed += int64(n)
		if p.hashed >= p.want.Size || err == io.EOF {
			got := p.h.Ref()
			if got.Size != p.want.Size || !strings.EqualFold(got.SHA256, p.want.SHA256) {
				p.err = fmt.Errorf("storage: runbundle %s opens to other content than its sha256 %s and size %d: %w",
					p.want.CID, p.want.SHA256, p.want.Size, cas.ErrCorrupt)
				return 0, p.err
			}
			p.hashed = p.want.Size + 1 // checked: hash no more
		}
	}
	p.pos += int64(n)
	return n, err
}

func (p *checkedPlain) Close() error { return p.rc.Close() }
