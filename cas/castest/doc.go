// Package castest owns the behavioural test suite that every cas.Store
// implementation runs: call TestStore from the implementation's tests with a
// constructor that returns a fresh, empty store.
package castest
