package oidc_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test ends what it started: providers, nodes' handlers, waiting
// polls and the connections of their clients.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
