package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pwmesh/pwmesh/mesh"
	"github.com/pwmesh/pwmesh/node/scaler"
	"github.com/pwmesh/pwmesh/node/worker/docker"
	"github.com/pwmesh/pwmesh/scheduler"
)

// validateScaler checks the --scaler* settings.
func (c *Config) validateScaler(bad func(string, ...any)) {
	if c.Scaler == "" {
		c.Scaler = scheduler.ScalerNone
	}
	switch {
	case c.Scaler == scheduler.ScalerNone, c.Scaler == scheduler.ScalerDocker:
	case strings.HasPrefix(c.Scaler, "exec:"):
		if _, err := scaler.ParseExec(c.Scaler); err != nil {
			bad("--scaler %q: %v", c.Scaler, err)
		}
	default:
		bad("--scaler %q: want none, docker or exec:CMD (e.g. exec:/usr/local/bin/gpu-workers)", c.Scaler)
	}
	if c.ScalerMin < 0 || c.ScalerMax < c.ScalerMin || c.ScalerMax > 1000 {
		bad("--scaler-min %d, --scaler-max %d: want 0 <= min <= max <= 1000", c.ScalerMin, c.ScalerMax)
	}
	if c.ScalerIdle <= 0 {
		bad("--scaler-idle %s: want a duration above 0 (e.g. 5m)", time.Duration(c.ScalerIdle))
	}
	if c.ScalerCooldown < 0 {
		bad("--scaler-cooldown %s: must not be negative", time.Duration(c.ScalerCooldown))
	}
	if c.Scaler != scheduler.ScalerNone && c.ClusterKeyFile == "" {
		bad("--scaler %s needs --cluster-key: the workers it starts join the mesh with the cluster key", c.Scaler)
	}
	if c.Scaler != scheduler.ScalerNone && c.Voter == "never" {
		bad("--scaler %s on a node with --voter never: only the leader scales, and such a node never leads; give the scaler flags to the voters", c.Scaler)
	}
	if c.ScalerManaged && c.Voter != "never" {
		bad("--scaler-managed needs --voter never: a scaler removes the workers it started, and a Raft voter is not one to remove")
	}
}

// scaleMode is the mode the status shows: none, exec or docker.
func scaleMode(s string) string {
	if strings.HasPrefix(s, "exec:") {
		return scheduler.ScalerExec
	}
	return s
}

// newScaleProvider builds the provider of --scaler (nil for none).
func (n *Node) newScaleProvider() (scaler.Provider, error) {
	switch mode := scaleMode(n.cfg.Scaler); mode {
	case scheduler.ScalerNone:
		return nil, nil
	case scheduler.ScalerExec:
		e, err := scaler.ParseExec(n.cfg.Scaler)
		if err != nil {
			return nil, fmt.Errorf("--scaler: %w", err)
		}
		return e, nil
	case scheduler.ScalerDocker:
		if n.hasRealGPUs() {
			return nil, fmt.Errorf("--scaler docker: this machine has NVIDIA GPUs, and the node image's static binary cannot use them (its workers simulate GPUs); start GPU workers with --scaler exec:CMD (docs/scaling.md)")
		}
		bin := n.cfg.Binary
		if bin == "" {
			bin, _ = os.Executable()
		}
		w, err := docker.NewWorkers(docker.WorkersConfig{
			Image:        n.cfg.ScalerImage,
			StaticBinary: filepath.Join(filepath.Dir(bin), docker.StaticBinaryName),
			ClusterKey:   n.clusterKey,
			Bind:         n.cfg.Bind,
			Region:       n.cfg.Region,
			Args:         n.cfg.ScalerWorkerArgs,
			Logger:       n.log,
		})
		if err != nil {
			return nil, fmt.Errorf("--scaler docker: %w", err)
		}
		return &dockerScaler{w: w, newID: func() string { return "node-" + randHex(6) }}, nil
	default:
		return nil, fmt.Errorf("--scaler %q: unknown mode", n.cfg.Scaler)
	}
}

// hasRealGPUs reports whether this machine's GPUs are NVIDIA's, which the
// docker scaler's workers could not use.
func (n *Node) hasRealGPUs() bool {
	if isFakeGPUs(n.gpus) {
		return false
	}
	devs, err := n.gpus.Devices(context.Background())
	return err == nil && len(devs) > 0
}

// dockerScaler is the docker provider: worker containers of the node
// image on this machine's engine.
type dockerScaler struct {
	w     *docker.Workers
	newID func() string
}

// Scale starts all of r.Add or none (a failed start stops the ones this
// call started, so that a retry cannot overshoot --scaler-max), then stops
// r.Remove.
func (d *dockerScaler) Scale(ctx context.Context, r scaler.Request) error {
	if r.Add > 0 {
		if err := d.w.EnsureImage(ctx); err != nil {
			return err
		}
	}
	var started []string
	for range r.Add {
		id := d.newID()
		if err := d.w.Start(ctx, docker.WorkerSpec{NodeID: id, Join: r.Join, Pool: r.Pool, GPUClass: r.GPUClass, GPUs: r.GPUs}); err != nil {
			for _, s := range started {
				_ = d.w.Stop(context.WithoutCancel(ctx), s, 10*time.Second)
			}
			return err
		}
		started = append(started, id)
	}
	for _, id := range r.Remove {
		if err := d.w.Stop(ctx, id, 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// scaleConfig is the planner's view of --scaler* and of what the
// provider's workers can do: the docker scaler's run jobs as processes, in
// this node's region, without job network; an exec hook's may have Docker
// and network, and are told the region to join.
func (n *Node) scaleConfig() scheduler.ScaleConfig {
	c := scheduler.ScaleConfig{Mode: scaleMode(n.cfg.Scaler), Min: n.cfg.ScalerMin, Max: n.cfg.ScalerMax,
		Idle: time.Duration(n.cfg.ScalerIdle), Cooldown: time.Duration(n.cfg.ScalerCooldown)}
	switch c.Mode {
	case scheduler.ScalerDocker:
		c.Executors, c.Region = []string{"process"}, n.cfg.Region
	case scheduler.ScalerExec:
		c.Executors, c.JobNetwork = []string{"process", "docker"}, true
	}
	return c
}

// runScaler is the autoscaler's loop while this node leads. A leader with
// no scaler says so in the status and ends an action a predecessor left.
func (n *Node) runScaler(ctx context.Context) {
	if n.scaleProvider == nil {
		if err := scaler.Interrupt(ctx, n.fsm, n.raft, n.cfg.Clock, n.log); err != nil {
			n.log.Warn("scaler", "err", err)
		}
		if st := n.fsm.Scaler().Status; st.Mode != "" && st.Mode != scheduler.ScalerNone {
			_, err := n.raft.Apply(ctx, &scheduler.ScaleStatus{At: n.cfg.Clock.Now(), Status: scheduler.ScalerStatus{Mode: scheduler.ScalerNone,
				Reason: "the leader runs no scaler (give every voter the same --scaler flags)"}})
			if err != nil {
				n.log.Warn("scaler: status", "err", err)
			}
		}
		return
	}
	defer n.scaleMetrics.Reset()
	l, err := scaler.New(scaler.Config{
		Scale:    n.scaleConfig(),
		Interval: n.cfg.ScalerInterval,
		Timeout:  n.cfg.ScalerTimeout,
		Join:     n.joinAddrs,
		Clock:    n.cfg.Clock,
		Logger:   n.log.With("component", "scaler"),
		Metrics:  n.scaleMetrics,
	}, n.fsm, n.raft, n.scaleProvider)
	if err != nil {
		n.log.Error("scaler", "err", err)
		return
	}
	_ = l.Run(ctx)
}

// joinAddrs are the gossip addresses new workers join through: this
// node's and every other live voter's.
func (n *Node) joinAddrs() []string {
	voters := map[string]bool{n.id: true}
	for _, nd := range n.fsm.Nodes() {
		if nd.Voter && nd.State == scheduler.NodeReady {
			voters[nd.ID] = true
		}
	}
	var out []string
	for _, m := range n.mesh.Members() {
		if voters[m.NodeID] && m.State == mesh.StateAlive && m.Addr != "" {
			out = append(out, m.Addr)
		}
	}
	if len(out) == 0 {
		out = append(out, n.mesh.GossipAddr())
	}
	// Our own first, then the others in a stable order.
	self := n.mesh.GossipAddr()
	slices.SortStableFunc(out, func(a, b string) int {
		switch {
		case a == self:
			return -1
		case b == self:
			return 1
		}
		return strings.Compare(a, b)
	})
	for i, a := range out {
		// A wildcard bind is no address to join: name this host.
		if host, port, err := net.SplitHostPort(a); err == nil && (host == "0.0.0.0" || host == "::") {
			out[i] = net.JoinHostPort("127.0.0.1", port)
		}
	}
	return slices.Compact(out)
}
