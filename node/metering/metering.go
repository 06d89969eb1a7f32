// Package metering counts a node's API calls exactly, through Raft.
//
// Every authenticated request waits, before it is served, until its call
// is committed to the replicated usage ledger (scheduler.MeterCalls). The
// calls that arrive while one batch is in flight go out together in the
// next (group commit), so a node makes at most one metering write at a
// time however many requests it serves. The leader's state machine grants
// each tenant what its daily quota leaves and the node refuses the rest
// with ErrQuota.
//
// Exactness: a batch carries (node, incarnation, sequence number), and the
// state machine answers a batch it has already applied with its first
// answer, so a batch retried after a leader change or a lost answer is
// counted once. A call is served only after its batch committed, so no
// call is served unbilled, and a node restart forgets nothing. The one
// gap: a batch that committed but whose requests had already gone (their
// clients hung up) bills calls that got no answer.
package metering

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pwmesh/pwmesh/scheduler"
)

// Applier commits a command through the leader (node.Node).
type Applier interface {
	Apply(ctx context.Context, c scheduler.Command) (any, error)
}

// Config configures a Meter.
type Config struct {
	// Node and Incarnation name this node's process in every batch.
	Node, Incarnation string
	Apply             Applier
	Clock             scheduler.Clock
	Logger            *slog.Logger
	// MaxBatch bounds the calls of one batch (default 4096); more wait
	// for the next.
	MaxBatch int
	// Retry is the pause between two tries of a batch that met no leader
	// (default 50 ms).
	Retry time.Duration
}

// ErrStopped is returned to calls pending when the Meter stops.
var ErrStopped = errors.New("metering: stopped")

// Meter batches a node's calls into MeterCalls commands.
type Meter struct {
	cfg Config

	mu      sync.Mutex
	pending []*call
	stopped bool
	kick    chan struct{}
	seq     uint64
}

type call struct {
	tenant string
	done   chan error // buffered: the loop never blocks on a caller
}

// New returns a Meter; Run drives it.
func New(cfg Config) (*Meter, error) {
	if cfg.Node == "" || cfg.Apply == nil || cfg.Clock == nil {
		return nil, errors.New("metering: Node, Apply and Clock are required")
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 4096
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Meter{cfg: cfg, kick: make(chan struct{}, 1)}, nil
}

// Call counts one API call of tenant and returns once it is committed:
// nil to serve it, an error wrapping scheduler.ErrQuota when the tenant's
// daily quota is used, ctx's error when the caller gave up first (the
// call may still be billed if its batch was already sent), ErrStopped
// when the node stops.
func (m *Meter) Call(ctx context.Context, tenant string) error {
	c := &call{tenant: tenant, done: make(chan error, 1)}
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return ErrStopped
	}
	m.pending = append(m.pending, c)
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		if m.withdraw(c) {
			return ctx.Err()
		}
		// Already sent: its fate is the batch's.
		return <-c.done
	}
}

// withdraw takes c out of the batch not yet sent; false when it was sent.
func (m *Meter) withdraw(c *call) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, p := range m.pending {
		if p == c {
			m.pending = append(m.pending[:i], m.pending[i+1:]...)
			return true
		}
	}
	return false
}

// Run sends batches until ctx ends, then refuses what is pending.
func (m *Meter) Run(ctx context.Context) error {
	defer m.stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.kick:
		}
		for {
			batch := m.take()
			if len(batch) == 0 {
				break
			}
			if err := m.send(ctx, batch); err != nil {
				for _, c := range batch {
					c.done <- err
				}
				if ctx.Err() != nil {
					return nil
				}
			}
		}
	}
}

func (m *Meter) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = true
	for _, c := range m.pending {
		c.done <- ErrStopped
	}
	m.pending = nil
}

// take removes up to MaxBatch pending calls: the next batch.
func (m *Meter) take() []*call {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := min(len(m.pending), m.cfg.MaxBatch)
	batch := m.pending[:n:n]
	m.pending = append([]*call(nil), m.pending[n:]...)
	return batch
}

// send commits one batch, trying again (the same sequence number) until
// it is applied, refused for good, or ctx ends; it answers each call.
func (m *Meter) send(ctx context.Context, batch []*call) error {
	counts := map[string]int64{}
	for _, c := range batch {
		counts[c.tenant]++
	}
	m.seq++
	cmd := &scheduler.MeterCalls{Node: m.cfg.Node, Incarnation: m.cfg.Incarnation, Seq: m.seq, Calls: counts}
	for {
		cmd.At = m.cfg.Clock.Now()
		v, err := m.cfg.Apply.Apply(ctx, cmd)
		if err == nil {
			res, ok := v.(scheduler.MeterResult)
			if !ok {
				return fmt.Errorf("metering: unexpected answer %T", v)
			}
			m.answer(batch, res)
			return nil
		}
		if ctx.Err() != nil {
			return ErrStopped
		}
		if !retryable(err) {
			m.cfg.Logger.Error("metering: batch refused", "seq", cmd.Seq, "calls", len(batch), "err", err)
			return fmt.Errorf("metering: %w", err)
		}
		m.cfg.Logger.Debug("metering: batch not committed yet; trying again", "seq", cmd.Seq, "err", err)
		select {
		case <-ctx.Done():
			return ErrStopped
		case <-time.After(m.cfg.Retry):
		}
	}
}

// retryable: the batch may not have been applied, or was and its answer
// was lost; sending it again is safe (deduplicated by its sequence).
func retryable(err error) bool {
	switch {
	case errors.Is(err, scheduler.ErrInvalid), errors.Is(err, scheduler.ErrForbidden),
		errors.Is(err, scheduler.ErrUnknownCmd), errors.Is(err, scheduler.ErrConflict),
		errors.Is(err, scheduler.ErrPayloadBytes):
		return false
	}
	return true
}

// answer serves each tenant's first Allowed calls and refuses the rest.
func (m *Meter) answer(batch []*call, res scheduler.MeterResult) {
	left := res.Allowed
	for _, c := range batch {
		if left[c.tenant] > 0 {
			left[c.tenant]--
			c.done <- nil
			continue
		}
		c.done <- fmt.Errorf("%w: %s: tenant %s has made its API calls of %s (UTC); more are allowed from 00:00 UTC",
			scheduler.ErrQuota, scheduler.QuotaAPICalls, c.tenant, res.Day)
	}
}
