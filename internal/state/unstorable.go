package state

import "errors"

// ErrUnstorable marks an error that retrying cannot cure because of the
// data being written: a property or an entity over the store's limits, a
// value the store rejects. A store wraps such errors with Unstorable; the
// pipeline then isolates the records whose data caused it and
// dead-letters them instead of failing their batch for ever. Every other
// store error (throttling, a server error, a timeout, a broken
// connection, a wrong key) fails the batch, which the host retries.
//
// The store that talks to the service decides which of its errors are
// unstorable (tablestore's classification, in internal/tablestore/errors.go,
// is the only one); this package only carries the verdict, so the pipeline
// can read it without importing any Azure SDK.
var ErrUnstorable = errors.New("data cannot be stored")

// UnstorableError wraps an error the data caused; errors.Is(err,
// ErrUnstorable) holds for it and errors.As still finds its cause.
type UnstorableError struct{ Err error }

func (e *UnstorableError) Error() string {
	if e.Err == nil {
		return ErrUnstorable.Error()
	}
	return e.Err.Error()
}

// Unwrap returns the cause.
func (e *UnstorableError) Unwrap() error { return e.Err }

// Is reports whether target is ErrUnstorable.
func (e *UnstorableError) Is(target error) bool { return target == ErrUnstorable }

// Unstorable marks err as caused by the data written (nil stays nil).
func Unstorable(err error) error {
	if err == nil || errors.Is(err, ErrUnstorable) {
		return err
	}
	return &UnstorableError{Err: err}
}

// IsUnstorable reports whether err, or an error it wraps, was marked by
// Unstorable.
func IsUnstorable(err error) bool { return errors.Is(err, ErrUnstorable) }
