package docker

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pwmesh/pwmesh/node/worker"
	"github.com/pwmesh/pwmesh/scheduler"
)

// TestJobNetworkEgress runs the probe on the job network of the real
// engine, behind its firewall: it cannot reach the host (at its primary
// address, docker0's or the job bridge's), link-local 169.254.169.254,
// loopback, nor a mesh port on another machine; it does reach another
// machine's other port (a network namespace the test routes to), so the
// refusals are the rules', not a dead network. Close takes the network
// and every rule away.
func TestJobNetworkEgress(t *testing.T) {
	t.Parallel()
	needEngine(t)
	if os.Geteuid() != 0 {
		t.Skip("the job network's firewall needs root (iptables); skipping")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command (iproute2) to make the test's other machine; skipping")
	}
	image := probeImage(t)
	other, allowed, meshPort := otherMachine(t)

	e := newExec(t, Config{MeshPorts: []int{meshPort}})
	if err := e.SetupJobNetwork(t.Context()); err != nil {
		t.Fatalf("SetupJobNetwork: %v", err)
	}
	names := namesFor(e.cfg.NodeID)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = e.Close()
		}
	})
	if !e.GrantsNetwork() {
		t.Fatal("GrantsNetwork is false with the job network set up")
	}
	// Repeating the setup changes nothing.
	if err := e.SetupJobNetwork(t.Context()); err != nil {
		t.Fatalf("SetupJobNetwork again: %v", err)
	}

	hostAddr, _ := hostListener(t)
	_, hostPort, _ := net.SplitHostPort(hostAddr)
	blocked := map[string]string{
		"link-local (cloud metadata)": "169.254.169.254:80",
		"loopback":                    "127.0.0.1:" + hostPort,
		"a mesh port elsewhere":       net.JoinHostPort(other, strconv.Itoa(meshPort)),
	}
	for name, ifc := range map[string]string{"docker0": "docker0", "the job bridge": names.Bridge} {
		if ip := ifaceIPv4(ifc); ip != "" {
			blocked["the host at "+name] = net.JoinHostPort(ip, hostPort)
		}
	}
	if ip := primaryIPv4(); ip != "" {
		blocked["the host's primary address"] = net.JoinHostPort(ip, hostPort)
	} else {
		t.Log("no primary IPv4 address on this host: not dialled")
	}
	reach := net.JoinHostPort(other, strconv.Itoa(allowed))
	dials := []string{reach}
	for _, a := range blocked {
		dials = append(dials, a)
	}

	// Firewall rules someone took away are put back before the next job.
	if _, err := run(t.Context(), e.jobNet.ipt, "-t", "filter", "-F", names.Chain); err != nil {
		t.Fatal(err)
	}
	root := jobDir(t, map[string]any{"mode": "net", "dials": dials})
	var log syncBuffer
	err := e.Run(t.Context(), worker.Task{JobID: "job-" + randID(), Root: root, Timeout: time.Minute, Log: &log, Image: image, Network: scheduler.NetworkBridge})
	assertNoContainers(t, e)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	got, _ := result(t, root)["dials"].(map[string]any)
	if msg := got[reach]; msg != "" {
		t.Errorf("the job cannot reach an allowed address %s: %v (a dead network proves nothing)", reach, msg)
	}
	for name, a := range blocked {
		if msg, ok := got[a].(string); !ok || msg == "" {
			t.Errorf("the job reached %s at %s", name, a)
		}
	}
	if !log.Contains("network: bridge") {
		t.Errorf("the log does not say the job runs with network:\n%s", log.String())
	}

	ipt := e.jobNet.ipt
	closed = true
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if e.GrantsNetwork() {
		t.Error("GrantsNetwork after Close")
	}
	if _, err := run(t.Context(), ipt, "-t", "filter", "-S", names.Chain); err == nil {
		t.Errorf("chain %s left after Close", names.Chain)
	}
	if out, _ := run(t.Context(), ipt, "-t", "filter", "-S"); strings.Contains(string(out), names.Bridge) {
		t.Errorf("rules naming %s left after Close:\n%s", names.Bridge, out)
	}
	if _, err := e.c.networkInspect(t.Context(), names.Network); err == nil {
		t.Errorf("network %s left after Close", names.Network)
	}
}

// otherMachine makes a network namespace joined to the host by a veth
// pair and routed like any other machine, with listeners on two ports; it
// returns its address, the port a job may reach and the one the test
// declares a mesh port. Everything goes at cleanup.
func otherMachine(t *testing.T) (addr string, allowed, mesh int) {
	t.Helper()
	var b [2]byte
	_, _ = rand.Read(b[:])
	id := randID()[:8]
	ns, host, peer := "pwmt-"+id, "pwth"+id, "pwtn"+id
	// 198.18.0.0/15 is for benchmarks: no real machine is there.
	base := fmt.Sprintf("198.%d.%d.", 18+int(b[0]&1), b[1])
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	ip("link", "add", host, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	ip("link", "set", peer, "netns", ns)
	ip("addr", "add", base+"1/30", "dev", host)
	ip("link", "set", host, "up")
	ip("-n", ns, "addr", "add", base+"2/30", "dev", peer)
	ip("-n", ns, "link", "set", peer, "up")
	ip("-n", ns, "link", "set", "lo", "up")
	ip("-n", ns, "route", "add", "default", "via", base+"1")

	allowed, mesh = freePort(t), freePort(t)
	bin := goBuild(t, t.TempDir(), "probe", "./testdata/probe", "-s -w")
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "serve",
		net.JoinHostPort(base+"2", strconv.Itoa(allowed)), net.JoinHostPort(base+"2", strconv.Itoa(mesh)))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := sc.Scan() && sc.Text() == "ready"
		ready <- ok
	}()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("the other machine's listeners did not start")
		}
	case <-ctx.Done():
		t.Fatal("the other machine's listeners did not start within a minute")
	}
	return base + "2", allowed, mesh
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ifaceIPv4 is an interface's first IPv4 address, "" if none.
func ifaceIPv4(name string) string {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return ""
	}
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil {
			return ip.IP.String()
		}
	}
	return ""
}

// primaryIPv4 is the address the host reaches the world from.
func primaryIPv4() string {
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || ifc.Name == "docker0" ||
			strings.HasPrefix(ifc.Name, "br-") || strings.HasPrefix(ifc.Name, "veth") || strings.HasPrefix(ifc.Name, "pw") {
			continue
		}
		if ip := ifaceIPv4(ifc.Name); ip != "" {
			return ip
		}
	}
	return ""
}
