package storage

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/cas/seal"
	"github.com/pwmesh/pwmesh/scheduler"
)

// tenantAAD binds a wrapped data key and sealed content to their tenant.
func tenantAAD(tenant string) []byte { return []byte("pwmesh tenant:" + tenant) }

// PutDataset seals a tenant's dataset with the tenant's newest data key,
// stores it, and makes it durable. The answer carries the plaintext's CID,
// SHA-256 and size (what the tenant uploaded) and the sealed form's; ID,
// Name and CreatedAt are the caller's. When the tenant already has a
// dataset with the same plaintext, its stored copy is shared and the new
// one discarded (stored bytes are counted once).
func (s *Storage) PutDataset(ctx context.Context, tenant string, r io.Reader) (scheduler.Dataset, error) {
	o, err := s.putSealed(ctx, tenant, r)
	if err != nil {
		return scheduler.Dataset{}, fmt.Errorf("storage: store dataset: %w", err)
	}
	d := scheduler.Dataset{Tenant: tenant, CID: o.plain.CID.String(), SHA256: o.plain.SHA256, Size: o.plain.Size,
		StoredCID: o.stored.CID.String(), StoredSize: o.stored.Size, KeyVersion: o.version}
	for _, old := range s.state.Datasets(tenant) {
		if old.CID == d.CID && old.StoredCID != "" && s.state.Durable(old.StoredCID) == nil {
			if _, indexed := s.state.Blob(o.stored.CID.String()); !indexed {
				_ = s.cfg.Local.Delete(context.WithoutCancel(ctx), o.stored.CID)
			}
			d.StoredCID, d.StoredSize, d.KeyVersion = old.StoredCID, old.StoredSize, old.KeyVersion
			return d, nil
		}
	}
	if err := s.Keep(ctx, o.stored, scheduler.BlobDataset); err != nil {
		return scheduler.Dataset{}, err
	}
	return d, nil
}

// OpenDataset returns a dataset's plaintext, which seeks (a seek reads
// only the segment it lands in). Every segment is authenticated before
// its bytes are returned; a reader error wraps seal.ErrAuth if the stored
// form was tampered with.
func (s *Storage) OpenDataset(ctx context.Context, d scheduler.Dataset) (io.ReadSeekCloser, error) {
	c, err := cas.ParseCID(d.Stored())
	if err != nil {
		return nil, err
	}
	if d.StoredCID == "" {
		return s.store.Open(ctx, c) // stored before datasets were sealed
	}
	return s.openSealed(ctx, d.Tenant, c)
}

// sealedObject is what putSealed stored: the plaintext's name, the sealed
// form's, and the data key version that sealed it.
type sealedObject struct {
	plain, stored cas.Ref
	version       uint32
}

// putSealed seals r with tenant's newest data key (creating the first one
// if need be) into this node's disk; Keep makes it durable. A failure of r
// or of the disk leaves nothing stored.
func (s *Storage) putSealed(ctx context.Context, tenant string, r io.Reader) (sealedObject, error) {
	version, key, err := s.currentKey(ctx, tenant)
	if err != nil {
		return sealedObject{}, err
	}
	aad := tenantAAD(tenant)
	pr, pw := io.Pipe()
	plain := cas.NewHasher()
	sealed := make(chan error, 1)
	go func() {
		w, err := seal.NewWriter(pw, key, version, aad)
		if err == nil {
			_, err = io.Copy(w, io.TeeReader(r, plain))
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
		sealed <- err
	}()
	ref, err := s.cfg.Local.Put(ctx, pr)
	pr.CloseWithError(err)
	if serr := <-sealed; serr != nil {
		if err == nil {
			// The sealed object is whole but the plaintext was not: drop it.
			_ = s.cfg.Local.Delete(context.WithoutCancel(ctx), ref.CID)
		}
		return sealedObject{}, serr
	}
	if err != nil {
		return sealedObject{}, err
	}
	return sealedObject{plain: plain.Ref(), stored: ref, version: version}, nil
}

// openSealed returns the plaintext of the sealed object c of tenant,
// fetching the object if this node lacks it. It seeks (a seek reads only
// the segment it lands in). Reads fail with an error wrapping
// seal.ErrAuth on any tampering, or when c was sealed for another tenant.
func (s *Storage) openSealed(ctx context.Context, tenant string, c cid.Cid) (io.ReadSeekCloser, error) {
	t, ok := s.state.Tenant(tenant)
	if !ok {
		return nil, fmt.Errorf("storage: tenant %s: %w", tenant, scheduler.ErrNotFound)
	}
	f, err := s.store.Open(ctx, c)
	if err != nil {
		return nil, err
	}
	keys := func(v uint32) ([32]byte, error) {
		for _, k := range t.Keys {
			if k.Version == v {
				return s.cfg.Keys.Unwrap(toWrapped(k), tenantAAD(tenant))
			}
		}
		return [32]byte{}, fmt.Errorf("storage: tenant %s has no data key version %d", tenant, v)
	}
	r, err := seal.NewSeekReader(f, keys, tenantAAD(tenant))
	if err != nil {
		f.Close()
		return nil, err
	}
	return readSeekCloser{ReadSeeker: r, Closer: f}, nil
}

type readSeekCloser struct {
	io.ReadSeeker
	io.Closer
}

// currentKey returns the tenant's newest data key, creating version 1 when
// the tenant has none.
func (s *Storage) currentKey(ctx context.Context, tenant string) (uint32, [32]byte, error) {
	for {
		t, ok := s.state.Tenant(tenant)
		if !ok {
			return 0, [32]byte{}, fmt.Errorf("storage: tenant %s: %w", tenant, scheduler.ErrNotFound)
		}
		if n := len(t.Keys); n > 0 {
			k := t.Keys[n-1]
			plain, err := s.cfg.Keys.Unwrap(toWrapped(k), tenantAAD(tenant))
			if err != nil {
				return 0, [32]byte{}, fmt.Errorf("storage: data key of %s: %w", tenant, err)
			}
			return k.Version, plain, nil
		}
		plain, w, err := s.cfg.Keys.NewDataKey(1, tenantAAD(tenant))
		if err != nil {
			return 0, [32]byte{}, err
		}
		_, err = s.applyPatiently(ctx, &scheduler.PutTenantKeys{At: s.cfg.Clock.Now(), Tenant: tenant, PrevGen: t.KeysGen,
			Keys: []scheduler.SealedKey{fromWrapped(w)}})
		switch {
		case err == nil:
			return 1, plain, nil
		case errors.Is(err, scheduler.ErrConflict):
			// Another node made the first key: wait for it and use it.
			if err := s.awaitTenant(ctx, tenant, t.KeysGen); err != nil {
				return 0, [32]byte{}, err
			}
		default:
			return 0, [32]byte{}, fmt.Errorf("storage: create data key of %s: %w", tenant, err)
		}
	}
}

// awaitTenant waits until the local replica shows a key generation past gen.
func (s *Storage) awaitTenant(ctx context.Context, tenant string, gen uint64) error {
	for {
		changed := s.state.Watch()
		if t, ok := s.state.Tenant(tenant); ok && t.KeysGen > gen {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// RotateTenantKey adds a new data key version for tenant: new datasets are
// sealed with it, older ones stay readable with theirs.
func (s *Storage) RotateTenantKey(ctx context.Context, tenant string) (uint32, error) {
	t, ok := s.state.Tenant(tenant)
	if !ok {
		return 0, fmt.Errorf("storage: tenant %s: %w", tenant, scheduler.ErrNotFound)
	}
	var next uint32 = 1
	if n := len(t.Keys); n > 0 {
		next = t.Keys[n-1].Version + 1
	}
	_, w, err := s.cfg.Keys.NewDataKey(next, tenantAAD(tenant))
	if err != nil {
		return 0, err
	}
	keys := append(t.Keys, fromWrapped(w))
	if _, err := s.w.Apply(ctx, &scheduler.PutTenantKeys{At: s.cfg.Clock.Now(), Tenant: tenant, PrevGen: t.KeysGen, Keys: keys}); err != nil {
		return 0, fmt.Errorf("storage: rotate data key of %s: %w", tenant, err)
	}
	return next, s.awaitTenant(ctx, tenant, t.KeysGen)
}

// RewrapTenantKeys wraps every data key of tenant with the keyring's active
// master key: step two of a master-key rotation (docs in cas/seal).
func (s *Storage) RewrapTenantKeys(ctx context.Context, tenant string) error {
	t, ok := s.state.Tenant(tenant)
	if !ok {
		return fmt.Errorf("storage: tenant %s: %w", tenant, scheduler.ErrNotFound)
	}
	if len(t.Keys) == 0 {
		return nil
	}
	keys := make([]scheduler.SealedKey, len(t.Keys))
	for i, k := range t.Keys {
		w, err := s.cfg.Keys.Rewrap(toWrapped(k), tenantAAD(tenant))
		if err != nil {
			return fmt.Errorf("storage: rewrap data key %d of %s: %w", k.Version, tenant, err)
		}
		keys[i] = fromWrapped(w)
	}
	if _, err := s.w.Apply(ctx, &scheduler.PutTenantKeys{At: s.cfg.Clock.Now(), Tenant: tenant, PrevGen: t.KeysGen, Keys: keys}); err != nil {
		return fmt.Errorf("storage: rewrap data keys of %s: %w", tenant, err)
	}
	return s.awaitTenant(ctx, tenant, t.KeysGen)
}

// RewrapAll rewraps every tenant's data keys with the active master key
// (step three of a master-key rotation) and returns how many tenants had
// keys, and the active master key's ID.
func (s *Storage) RewrapAll(ctx context.Context) (int, string, error) {
	n := 0
	for _, name := range s.state.TenantNames() {
		t, ok := s.state.Tenant(name)
		if !ok || len(t.Keys) == 0 {
			continue
		}
		if err := s.RewrapTenantKeys(ctx, name); err != nil {
			return n, s.cfg.Keys.Active(), err
		}
		n++
	}
	return n, s.cfg.Keys.Active(), nil
}

func toWrapped(k scheduler.SealedKey) seal.WrappedKey {
	return seal.WrappedKey{Version: k.Version, Master: k.Master, Sealed: k.Sealed}
}

func fromWrapped(w seal.WrappedKey) scheduler.SealedKey {
	return scheduler.SealedKey{Version: w.Version, Master: w.Master, Sealed: w.Sealed}
}
