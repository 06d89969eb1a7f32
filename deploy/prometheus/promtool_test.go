package prometheus

import (
	"os/exec"
	"testing"
)

// promtool finds promtool on PATH or skips: Debian's prometheus package
// provides it, and .ci/run installs it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not on PATH (apt-get install prometheus); the alert rules are not checked")
	}
	return p
}

// TestAlertRulesAreValid: promtool check rules accepts alerts.yml.
func TestAlertRulesAreValid(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(promtool(t), "check", "rules", "alerts.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules alerts.yml: %v\n%s", err, out)
	}
}

// TestAlertRulesUnitTests: each alert fires in its case in
// alerts_test.yml and stays quiet in the other.
func TestAlertRulesUnitTests(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(promtool(t), "test", "rules", "alerts_test.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules alerts_test.yml: %v\n%s", err, out)
	}
}
