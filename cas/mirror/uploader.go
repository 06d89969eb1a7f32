package mirror

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/pwmesh/pwmesh/cas"
)

// Clock is the time source of the Uploader's backoff; tests move a fake one.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real Clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time                         { return time.Now() }
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// UploaderConfig configures an Uploader. The zero value gives working
// defaults.
type UploaderConfig struct {
	// Workers is how many uploads run at once; default 2.
	Workers int
	// MinBackoff and MaxBackoff bound the wait before retrying a failed
	// upload: the first retry waits about MinBackoff, each later one about
	// twice as long as the one before, never more than MaxBackoff, each
	// drawn at random from the upper half of that span. Defaults 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// Clock defaults to SystemClock.
	Clock Clock
	// Logger defaults to discarding.
	Logger *slog.Logger
	// OnDone, when set, is called once per enqueued CID when it is finished:
	// with nil once it is in the destination, or with a permanent error (the
	// source no longer has it, or its content does not hash to its CID).
	// It runs on a worker; it may call Enqueue.
	OnDone func(cid.Cid, error)
}

// Uploader copies CIDs from a source store to a destination store (the
// mirror) in the background, retrying transient failures with backoff until
// its context ends.
type Uploader struct {
	src, dst cas.Store
	cfg      UploaderConfig
	wake     chan struct{} // cap 1: there may be new work

	mu      sync.Mutex
	pending map[cid.Cid]int // every CID not yet finished: its failures so far
	ready   []cid.Cid       // due now, in order
	waiting retryHeap       // failed, due after a backoff
	running bool

	failures atomic.Uint64 // upload attempts that failed
}

// NewUploader returns an Uploader from src to dst. Nothing moves until Run.
func NewUploader(src, dst cas.Store, cfg UploaderConfig) *Uploader {
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Uploader{src: src, dst: dst, cfg: cfg, wake: make(chan struct{}, 1), pending: map[cid.Cid]int{}}
}

// Enqueue asks for c to be uploaded. It never blocks; a CID already pending
// (queued, uploading or waiting to retry) is not queued twice.
func (u *Uploader) Enqueue(c cid.Cid) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.pending[c]; ok {
		return
	}
	u.pending[c] = 0
	u.ready = append(u.ready, c)
	u.poke()
}

// Failures is how many upload attempts failed since NewUploader, those
// retried later and those given up alike (an upload cut short by the end
// of Run is not a failure).
func (u *Uploader) Failures() uint64 { return u.failures.Load() }

// Pending is the number of CIDs enqueued and not yet finished.
func (u *Uploader) Pending() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.pending)
}

func (u *Uploader) poke() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Run uploads until ctx ends, then waits for its workers and returns nil.
// Uploads cut short stay pending for the next Run. Run must not be called
// again while it runs.
func (u *Uploader) Run(ctx context.Context) error {
	u.mu.Lock()
	if u.running {
		u.mu.Unlock()
		return errors.New("mirror: uploader already running")
	}
	u.running = true
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.running = false
		u.mu.Unlock()
	}()

	work := make(chan cid.Cid)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(work)
	for range u.cfg.Workers {
		wg.Go(func() {
			for c := range work {
				u.upload(ctx, c)
			}
		})
	}
	for {
		c, wait := u.next()
		if c.Defined() {
			select {
			case work <- c:
				continue
			case <-ctx.Done():
				u.requeue(c)
				return nil
			}
		}
		var timer <-chan time.Time
		if wait > 0 {
			timer = u.cfg.Clock.After(wait)
		}
		select {
		case <-u.wake:
		case <-timer:
		case <-ctx.Done():
			return nil
		}
	}
}

// next returns the next CID due, or else how long until one falls due (0:
// none is waiting).
func (u *Uploader) next() (cid.Cid, time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.cfg.Clock.Now()
	for len(u.waiting) > 0 && !u.waiting[0].due.After(now) {
		u.ready = append(u.ready, heap.Pop(&u.waiting).(retry).c)
	}
	if len(u.ready) > 0 {
		c := u.ready[0]
		u.ready = u.ready[1:]
		return c, 0
	}
	if len(u.waiting) > 0 {
		return cid.Undef, u.waiting[0].due.Sub(now)
	}
	return cid.Undef, 0
}

// requeue puts back, first in line, a CID that Run took but could not finish.
func (u *Uploader) requeue(c cid.Cid) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.ready = append([]cid.Cid{c}, u.ready...)
}

func (u *Uploader) upload(ctx context.Context, c cid.Cid) {
	err := u.copy(ctx, c)
	switch {
	case err == nil:
		u.cfg.Logger.Debug("mirror: uploaded", "cid", c.String())
		u.finish(c, nil)
	case ctx.Err() != nil:
		u.requeue(c)
	case permanent(err):
		u.failures.Add(1)
		u.cfg.Logger.Warn("mirror: upload failed for good", "cid", c.String(), "err", err)
		u.finish(c, err)
	default:
		u.retryLater(c, err)
	}
}

// copy uploads c unless dst has it already.
func (u *Uploader) copy(ctx context.Context, c cid.Cid) error {
	if ok, err := u.dst.Has(ctx, c); err != nil || ok {
		return err
	}
	f, err := u.src.Open(ctx, c)
	if err != nil {
		return fmt.Errorf("mirror: upload %s: %w", c, err)
	}
	defer f.Close()
	if _, err := u.dst.PutExpected(ctx, f, c); err != nil {
		return fmt.Errorf("mirror: upload %s: %w", c, err)
	}
	return nil
}

// permanent reports errors that retrying cannot cure.
func permanent(err error) bool {
	return errors.Is(err, cas.ErrNotFound) || errors.Is(err, cas.ErrCorrupt) || errors.Is(err, cas.ErrInvalidCID)
}

func (u *Uploader) finish(c cid.Cid, err error) {
	u.mu.Lock()
	delete(u.pending, c)
	u.mu.Unlock()
	if u.cfg.OnDone != nil {
		u.cfg.OnDone(c, err)
	}
}

func (u *Uploader) retryLater(c cid.Cid, err error) {
	u.failures.Add(1)
	u.mu.Lock()
	u.pending[c]++
	n := u.pending[c]
	d := backoff(n, u.cfg.MinBackoff, u.cfg.MaxBackoff, rand.Int64N)
	heap.Push(&u.waiting, retry{c: c, due: u.cfg.Clock.Now().Add(d)})
	u.poke()
	u.mu.Unlock()
	u.cfg.Logger.Warn("mirror: upload failed, will retry", "cid", c.String(), "err", err, "failures", n, "backoff", d)
}

// backoff is the wait after the n-th consecutive failure (n ≥ 1): the span
// lo·2^(n-1), capped at hi, of which the upper half is drawn at random
// (randN(k) returns a number in [0, k)).
func backoff(n int, lo, hi time.Duration, randN func(int64) int64) time.Duration {
	span := hi
	if n-1 < 62 && lo <= hi>>(n-1) {
		span = lo << (n - 1)
	}
	half := span / 2
	return span - half + time.Duration(randN(int64(half)+1))
}

type retry struct {
	c   cid.Cid
	due time.Time
}

// retryHeap orders retries by due time (container/heap).
type retryHeap []retry

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(retry)) }
func (h *retryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
