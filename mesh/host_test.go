package mesh

import (
	"bufio"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestListensOnlyOnBind checks, through the kernel's socket tables, that
// none of this process's sockets listens or is bound anywhere but
// 127.0.0.1 while open and keyed meshes run.
func TestListensOnlyOnBind(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc (Linux)")
	}
	startMeshes(t, 2, nil)
	startMeshes(t, 1, func(c *Config) { c.ClusterKey = GenerateClusterKey() })
	inodes := ownSocketInodes(t)
	checked := 0
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
		f, err := os.Open("/proc/self/net/" + table)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			local, state := fields[1], fields[3]
			isTCP := strings.HasPrefix(table, "tcp")
			if isTCP && state != "0A" { // only listeners matter for TCP
				continue
			}
			checked++
			if ip := hexIP(t, local); !ip.Equal(net.IPv4(127, 0, 0, 1)) {
				t.Errorf("%s socket bound to %s", table, ip)
			}
		}
		f.Close()
	}
	if checked < 6 { // 3 × (libp2p TCP + memberlist TCP + memberlist UDP)
		t.Errorf("found only %d listening sockets of this process", checked)
	}
}

func ownSocketInodes(t *testing.T) map[string]bool {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]bool)
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			out[strings.TrimSuffix(inode, "]")] = true
		}
	}
	return out
}

// hexIP decodes the address part of /proc/net's "0100007F:1F90".
func hexIP(t *testing.T, s string) net.IP {
	h, _, _ := strings.Cut(s, ":")
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatalf("bad address %q", s)
	}
	ip := make(net.IP, len(b))
	for i := 0; i < len(b); i += 4 { // each 32-bit word is little-endian
		ip[i], ip[i+1], ip[i+2], ip[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}
