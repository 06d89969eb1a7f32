package scheduler

import (
	"context"
	"errors"
)

// ErrorKind names a sentinel error so that it survives a hop between
// nodes: the leader sends the kind, the forwarder rebuilds an error that
// errors.Is the same sentinel.
type ErrorKind struct {
	Kind string
	Err  error
}

// ErrorKinds covers every sentinel error of this package (a test checks
// that each survives a hop), and the context's errors.
var ErrorKinds = []ErrorKind{
	{"not_found", ErrNotFound},
	{"conflict", ErrConflict},
	{"invalid", ErrInvalid},
	{"stale_token", ErrStaleToken},
	{"unknown_command", ErrUnknownCmd},
	{"not_leader", ErrNotLeader},
	{"no_leader", ErrNoLeader},
	{"malformed_payload", ErrPayloadBytes},
	{"not_durable", ErrNotDurable},
	{"idempotency_mismatch", ErrIdempotencyMismatch},
	{"forbidden", ErrForbidden},
	{"quota_exceeded", ErrQuota},
	{"deadline_exceeded", context.DeadlineExceeded},
	{"canceled", context.Canceled},
}

// KindInternal is the kind of an error no sentinel names.
const KindInternal = "internal"

// KindOf names the first sentinel err wraps, or KindInternal.
func KindOf(err error) string {
	for _, k := range ErrorKinds {
		if errors.Is(err, k.Err) {
			return k.Kind
		}
	}
	return KindInternal
}

// ErrorOfKind rebuilds an error sent as (kind, message): its text is msg
// and it wraps the kind's sentinel (none for an unknown kind).
func ErrorOfKind(kind, msg string) error {
	for _, k := range ErrorKinds {
		if k.Kind == kind {
			return &KindError{msg: msg, sentinel: k.Err}
		}
	}
	return &KindError{msg: msg}
}

// KindError is an error that happened on another node.
type KindError struct {
	msg      string
	sentinel error
}

func (e *KindError) Error() string { return e.msg }
func (e *KindError) Unwrap() error { return e.sentinel }
