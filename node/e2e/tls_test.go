package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pwmesh runs the CLI with env added to its environment and returns its
// exit status and combined output.
func pwmesh(t testing.TB, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(pwmeshBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if x, ok := err.(*exec.ExitError); ok {
			return x.ExitCode(), string(out)
		}
		t.Fatalf("pwmesh %q: %v", args, err)
	}
	return 0, string(out)
}

// TestTLSEndToEnd makes a CA and a node certificate with `pwmesh tls`,
// starts a dev node with them and drives it with the CLI over HTTPS: with
// PWMESH_CACERT a job is submitted and waited for; without it, or over
// plain http://, the CLI fails and says why.
func TestTLSEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binary")
	}
	t.Parallel()
	certs := t.TempDir()
	if code, out := pwmesh(t, certs, nil, "tls", "ca", "create"); code != 0 {
		t.Fatalf("tls ca create: exit %d\n%s", code, out)
	}
	if code, out := pwmesh(t, certs, nil, "tls", "cert", "create", "--name", "node1", "--ip", "127.0.0.1", "--dns", "localhost"); code != 0 {
		t.Fatalf("tls cert create: exit %d\n%s", code, out)
	}
	a := startAgent(t, t.TempDir(), "--tls-cert", filepath.Join(certs, "node1.pem"), "--tls-key", filepath.Join(certs, "node1-key.pem"))
	if !strings.HasPrefix(a.url, "https://127.0.0.1:") {
		t.Fatalf("the node reports API %q, want https://127.0.0.1:PORT", a.url)
	}
	ca := filepath.Join(certs, "pwmesh-agent-ca.pem")
	env := []string{"PWMESH_ADDR=" + a.url, "PWMESH_TOKEN=" + a.token, "PWMESH_CACERT=" + ca}

	code, out := pwmesh(t, certs, env, "job", "submit", "--type", "generate_dataset", "--param", "size=16", "--wait", "--json")
	if code != 0 || !strings.Contains(out, `"state": "succeeded"`) {
		t.Fatalf("job submit --wait over HTTPS: exit %d\n%s\nnode logs:\n%s", code, out, a.logs)
	}
	// The name in the certificate works as well as the IP.
	localhost := strings.Replace(a.url, "127.0.0.1", "localhost", 1)
	if code, out := pwmesh(t, certs, []string{"PWMESH_ADDR=" + localhost, "PWMESH_TOKEN=" + a.token, "PWMESH_CACERT=" + ca}, "nodes"); code != 0 {
		t.Fatalf("nodes via localhost: exit %d\n%s", code, out)
	}

	// Without the CA the certificate is not trusted, and the CLI says what to set.
	code, out = pwmesh(t, certs, []string{"PWMESH_ADDR=" + a.url, "PWMESH_TOKEN=" + a.token, "PWMESH_CACERT="}, "nodes")
	if code != 1 || !strings.Contains(out, "set PWMESH_CACERT to the CA that signed the node's certificate") {
		t.Errorf("without the CA: exit %d\n%s", code, out)
	}

	// Plain HTTP to the TLS port is refused, never served.
	plain := "http://" + strings.TrimPrefix(a.url, "https://")
	code, out = pwmesh(t, certs, []string{"PWMESH_ADDR=" + plain, "PWMESH_TOKEN=" + a.token}, "nodes")
	if code != 1 || !strings.Contains(out, "the node serves HTTPS") || strings.Contains(out, "node-") {
		t.Errorf("plain http:// to the TLS port: exit %d\n%s", code, out)
	}
}

// TestTLSFlagsRefused: one of the two flags, or a pair that does not
// load, is a configuration error (exit 2) that names the flags.
func TestTLSFlagsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binary")
	}
	t.Parallel()
	dir := t.TempDir()
	if code, out := pwmesh(t, dir, nil, "tls", "ca", "create"); code != 0 {
		t.Fatalf("tls ca create: exit %d\n%s", code, out)
	}
	for _, extra := range [][]string{
		{"--tls-cert", "pwmesh-agent-ca.pem"},
		{"--tls-key", "pwmesh-agent-ca-key.pem"},
		{"--tls-cert", "pwmesh-agent-ca.pem", "--tls-key", "missing-key.pem"},
		{"--tls-cert", "pwmesh-agent-ca-key.pem", "--tls-key", "pwmesh-agent-ca-key.pem"},
	} {
		args := append([]string{"agent", "--dev", "--data-dir", filepath.Join(dir, "data"), "--http", "127.0.0.1:0",
			"--p2p-port", "0", "--gossip-port", "0", "--gpus", "none", "--executor", "process"}, extra...)
		code, out := pwmesh(t, dir, nil, args...)
		if code != 2 || !strings.Contains(out, "--tls-") {
			t.Errorf("%q: exit %d, want 2 naming the flag\n%s", extra, code, out)
		}
	}
}
