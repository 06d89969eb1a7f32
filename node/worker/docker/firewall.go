package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// firewall keeps the containers on a job network away from what a job
// must not reach: the host itself (any of its addresses, so every service
// and the mesh's own ports there), link-local addresses (169.254.0.0/16:
// cloud metadata), loopback, ports the host publishes for other
// containers, and the mesh's ports on any other machine. It is iptables
// rules in the same iptables (nf_tables or legacy) that holds Docker's
// own, in a chain of its own that is rebuilt whole:
//
//	INPUT:       -i BRIDGE -j DROP
//	DOCKER-USER: -i BRIDGE -j CHAIN
//	CHAIN:       DNS (port 53) to each of the host's resolvers RETURN,
//	             -d 169.254.0.0/16 DROP, -d 127.0.0.0/8 DROP,
//	             dst-type LOCAL DROP, ctstate DNAT DROP,
//	             tcp and udp to each mesh port DROP, RETURN
//
// The resolvers' exception is for DNS alone: the engine's embedded DNS
// server forwards a job's lookups from the container's own network
// namespace, and some clouds serve DNS at a link-local address (GCE's
// metadata server, AWS's 169.254.169.253). A resolver on the host itself
// stays out of reach (INPUT).
//
// and, where the host speaks IPv6, ip6tables INPUT and FORWARD from the
// bridge DROP (the job network has no IPv6, but link-local addresses).
type firewall struct {
	ipt, ip6t string // binaries; ip6t "" where the host has no IPv6
	names     jobNetNames
	ports     []int
	resolvers []string // IPv4 addresses of the host's DNS servers
	mu        sync.Mutex
}

// errNoFirewall: the rules cannot be installed here.
var errNoFirewall = errors.New("docker: the job network's firewall cannot be installed")

// newFirewall finds the iptables that holds Docker's DOCKER-USER chain.
func newFirewall(ctx context.Context, names jobNetNames, ports []int) (*firewall, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: iptables needs root and this node runs as uid %d", errNoFirewall, os.Geteuid())
	}
	var tried []string
	for _, name := range []string{"iptables", "iptables-nft", "iptables-legacy"} {
		bin, err := lookSbin(name)
		if err != nil {
			continue
		}
		if _, err := run(ctx, bin, "-t", "filter", "-S", "DOCKER-USER"); err != nil {
			tried = append(tried, name)
			continue
		}
		fw := &firewall{ipt: bin, names: names, ports: ports, resolvers: hostResolvers()}
		if _, err := os.Stat("/proc/net/if_inet6"); err == nil {
			six := strings.Replace(name, "iptables", "ip6tables", 1)
			if fw.ip6t, err = lookSbin(six); err != nil {
				return nil, fmt.Errorf("%w: the host speaks IPv6 but %s is missing", errNoFirewall, six)
			}
		}
		return fw, nil
	}
	if len(tried) == 0 {
		return nil, fmt.Errorf("%w: no iptables binary found", errNoFirewall)
	}
	return nil, fmt.Errorf("%w: none of %s holds Docker's DOCKER-USER chain (does the engine run with --iptables=false?)", errNoFirewall, strings.Join(tried, ", "))
}

// lookSbin finds a binary in PATH or the sbin folders.
func lookSbin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, bin, append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// chainRules are the rules of the chain, as iptables -A arguments.
func (f *firewall) chainRules() [][]string {
	c := f.names.Chain
	var rules [][]string
	for _, r := range f.resolvers {
		for _, proto := range []string{"udp", "tcp"} {
			rules = append(rules, []string{c, "-d", r + "/32", "-p", proto, "-m", proto, "--dport", "53", "-j", "RETURN"})
		}
	}
	rules = append(rules, [][]string{
		{c, "-d", "169.254.0.0/16", "-j", "DROP"},
		{c, "-d", "127.0.0.0/8", "-j", "DROP"},
		{c, "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DROP"},
		{c, "-m", "conntrack", "--ctstate", "DNAT", "-j", "DROP"},
	}...)
	for _, p := range f.ports {
		for _, proto := range []string{"tcp", "udp"} {
			rules = append(rules, []string{c, "-p", proto, "-m", proto, "--dport", strconv.Itoa(p), "-j", "DROP"})
		}
	}
	return append(rules, []string{c, "-j", "RETURN"})
}

// jump is a rule outside the chain: the binary (iptables or ip6tables)
// and the rule, its chain first.
type jump struct {
	bin  string
	rule []string
}

// jumps are the rules outside the chain.
func (f *firewall) jumps() []jump {
	b := f.names.Bridge
	js := []jump{
		{f.ipt, []string{"INPUT", "-i", b, "-j", "DROP"}},
		{f.ipt, []string{"DOCKER-USER", "-i", b, "-j", f.names.Chain}},
	}
	if f.ip6t != "" {
		js = append(js, jump{f.ip6t, []string{"INPUT", "-i", b, "-j", "DROP"}}, jump{f.ip6t, []string{"FORWARD", "-i", b, "-j", "DROP"}})
	}
	return js
}

// install builds the rules afresh: the chain flushed and filled, each jump
// made first in its chain exactly once. It is safe to repeat.
func (f *firewall) install(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.names.Chain
	if _, err := run(ctx, f.ipt, "-t", "filter", "-S", c); err != nil {
		if _, err := run(ctx, f.ipt, "-t", "filter", "-N", c); err != nil {
			return fmt.Errorf("%w: %w", errNoFirewall, err)
		}
	}
	if _, err := run(ctx, f.ipt, "-t", "filter", "-F", c); err != nil {
		return fmt.Errorf("%w: %w", errNoFirewall, err)
	}
	for _, r := range f.chainRules() {
		if _, err := run(ctx, f.ipt, append([]string{"-t", "filter", "-A"}, r...)...); err != nil {
			return fmt.Errorf("%w: %w", errNoFirewall, err)
		}
	}
	for _, j := range f.jumps() {
		f.deleteAll(ctx, j.bin, j.rule)
		if _, err := run(ctx, j.bin, append([]string{"-t", "filter", "-I", j.rule[0], "1"}, j.rule[1:]...)...); err != nil {
			return fmt.Errorf("%w: %w", errNoFirewall, err)
		}
	}
	return nil
}

// deleteAll removes every copy of a rule.
func (f *firewall) deleteAll(ctx context.Context, bin string, rule []string) {
	for range 16 {
		if _, err := run(ctx, bin, append([]string{"-t", "filter", "-D"}, rule...)...); err != nil {
			return
		}
	}
}

// check reports whether every rule is in place (someone may have flushed
// the tables, or Docker rebuilt its chains after a restart).
func (f *firewall) check(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, j := range f.jumps() {
		if _, err := run(ctx, j.bin, append([]string{"-t", "filter", "-C"}, j.rule...)...); err != nil {
			return err
		}
	}
	for _, r := range f.chainRules() {
		if _, err := run(ctx, f.ipt, append([]string{"-t", "filter", "-C"}, r...)...); err != nil {
			return err
		}
	}
	return nil
}

// remove takes every rule away.
func (f *firewall) remove(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, j := range f.jumps() {
		f.deleteAll(ctx, j.bin, j.rule)
	}
	var errs []error
	if _, err := run(ctx, f.ipt, "-t", "filter", "-S", f.names.Chain); err == nil {
		if _, err := run(ctx, f.ipt, "-t", "filter", "-F", f.names.Chain); err != nil {
			errs = append(errs, err)
		}
		if _, err := run(ctx, f.ipt, "-t", "filter", "-X", f.names.Chain); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// hostResolvers are the IPv4 name servers the engine forwards a job's
// lookups to: those of /etc/resolv.conf, or where it names only loopback
// ones (systemd-resolved's stub), those the engine uses instead.
func hostResolvers() []string {
	for _, file := range []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"} {
		if b, err := os.ReadFile(file); err == nil {
			if out := parseResolvers(string(b)); len(out) > 0 {
				return out
			}
		}
	}
	return nil
}

// parseResolvers reads the non-loopback IPv4 name servers of a
// resolv.conf.
func parseResolvers(conf string) []string {
	var out []string
	for _, line := range strings.Split(conf, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		ip := net.ParseIP(f[1])
		if ip == nil || ip.To4() == nil || ip.IsLoopback() || ip.IsUnspecified() {
			continue
		}
		if s := ip.To4().String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
