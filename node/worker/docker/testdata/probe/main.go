// Command probe runs in the docker executor's test containers and reports
// what it may do. It reads what to do from /pwm/input/probe.json (or its
// arguments) and writes what it found to /pwm/output/result.json and to
// stdout.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

type order struct {
	Mode string `json:"mode"` // net, write, env, devices, oom, sleep, exit
	TCP  string `json:"tcp"`  // net: an address to dial
	DNS  string `json:"dns"`  // net: a name to resolve
	Code int    `json:"code"` // exit: the status
	// net: more addresses to dial at once; serve: addresses to listen on
	Dials []string `json:"dials"`
}

func main() {
	var o order
	if len(os.Args) > 1 {
		o.Mode = os.Args[1]
		if len(os.Args) > 2 {
			o.Code, _ = strconv.Atoi(os.Args[2])
		}
	} else if b, err := os.ReadFile("/pwm/input/probe.json"); err == nil {
		if err := json.Unmarshal(b, &o); err != nil {
			fmt.Fprintln(os.Stderr, "probe.json:", err)
			os.Exit(100)
		}
	}
	res := map[string]any{"mode": o.Mode}
	switch o.Mode {
	case "net":
		var names []string
		ifs, _ := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		res["interfaces"] = names
		if o.TCP != "" {
			c, err := net.DialTimeout("tcp", o.TCP, 3*time.Second)
			res["tcp_err"] = errText(err)
			if c != nil {
				c.Close()
			}
		}
		if len(o.Dials) > 0 {
			var mu sync.Mutex
			var wg sync.WaitGroup
			dials := map[string]string{}
			for _, a := range o.Dials {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.DialTimeout("tcp", a, 3*time.Second)
					if c != nil {
						c.Close()
					}
					mu.Lock()
					dials[a] = errText(err)
					mu.Unlock()
				}()
			}
			wg.Wait()
			res["dials"] = dials
		}
		if o.DNS != "" {
			_, err := net.LookupHost(o.DNS)
			res["dns_err"] = errText(err)
		}
	case "write":
		w := map[string]string{}
		for _, p := range []string{"/probe-was-here", "/pwm/probe-was-here", "/pwm/input/probe-was-here", "/pwm/job.json",
			"/tmp/probe-was-here", "/pwm/output/probe-was-here"} {
			w[p] = errText(os.WriteFile(p, []byte("x"), 0o644))
		}
		res["writes"] = w
	case "env":
		env := os.Environ()
		sort.Strings(env)
		res["env"] = env
		res["uid"], res["gid"], res["euid"] = os.Getuid(), os.Getgid(), os.Geteuid()
		groups, _ := os.Getgroups()
		res["groups"] = groups
		for _, kv := range env {
			fmt.Println("env:", kv)
		}
		fmt.Printf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())
		fmt.Fprintln(os.Stderr, "probe: to stderr")
	case "devices":
		// What GPUs the container sees: device nodes and the driver's list.
		var devs, gpus []string
		if es, err := os.ReadDir("/dev"); err == nil {
			for _, e := range es {
				if strings.HasPrefix(e.Name(), "nvidia") {
					devs = append(devs, e.Name())
				}
			}
		}
		if es, err := os.ReadDir("/proc/driver/nvidia/gpus"); err == nil {
			for _, e := range es {
				gpus = append(gpus, e.Name())
			}
		}
		res["dev_nvidia"], res["driver_gpus"] = devs, gpus
		var env []string
		for _, kv := range os.Environ() {
			if strings.HasPrefix(kv, "NVIDIA_") || strings.HasPrefix(kv, "CUDA_") {
				env = append(env, kv)
			}
		}
		res["gpu_env"] = env
	case "serve":
		// Outside any container (a test runs it in a network namespace):
		// accepts on each address in the arguments until killed.
		for _, a := range os.Args[2:] {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				fmt.Fprintln(os.Stderr, "probe: listen:", err)
				os.Exit(103)
			}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
		fmt.Println("ready")
		select {}
	case "sleep":
		fmt.Println("ready")
		for {
			time.Sleep(time.Hour)
		}
	case "oom":
		// Touches memory until the limit stops it.
		var keep [][]byte
		for {
			b := make([]byte, 16<<20)
			for i := range b {
				b[i] = 1
			}
			keep = append(keep, b)
		}
	case "exit":
		fmt.Fprintf(os.Stderr, "probe: exiting with %d\n", o.Code)
		os.Exit(o.Code)
	default:
		fmt.Fprintf(os.Stderr, "probe: unknown mode %q\n", o.Mode)
		os.Exit(101)
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	if err := os.WriteFile("/pwm/output/result.json", b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "probe: write result:", err)
		os.Exit(102)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
