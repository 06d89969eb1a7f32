package node

import (
	"context"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pwmesh/pwmesh/gpu"
	"github.com/pwmesh/pwmesh/scheduler"
)

// GPU telemetry: sampled every telemetryEvery into Prometheus; written to
// the replicated state (GET /nodes, placement) when a GPU's health changes
// at once, and when its readings moved at most every publishEvery.
const (
	telemetryEvery = 5 * time.Second
	publishEvery   = 5 * time.Second
)

type gpuMetrics struct {
	util, memUsed, memTotal, temp, healthy *prometheus.GaugeVec
}

func newGPUMetrics(reg prometheus.Registerer) *gpuMetrics {
	labels := []string{"gpu", "uuid", "model"}
	g := func(name, help string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		reg.MustRegister(v)
		return v
	}
	return &gpuMetrics{
		util:     g("pwmesh_gpu_utilization_percent", "GPU utilisation, percent."),
		memUsed:  g("pwmesh_gpu_memory_used_bytes", "GPU memory in use."),
		memTotal: g("pwmesh_gpu_memory_total_bytes", "GPU memory in all."),
		temp:     g("pwmesh_gpu_temperature_celsius", "GPU temperature."),
		healthy:  g("pwmesh_gpu_healthy", "1 while the GPU is in service, 0 once an XID or ECC error took it out."),
	}
}

func (m *gpuMetrics) set(devs []gpu.Device) {
	for _, d := range devs {
		l := prometheus.Labels{"gpu": strconv.Itoa(d.Index), "uuid": d.UUID, "model": d.Model}
		m.util.With(l).Set(d.Utilization)
		m.memUsed.With(l).Set(float64(d.MemoryUsedMB) * (1 << 20))
		m.memTotal.With(l).Set(float64(d.MemoryMB) * (1 << 20))
		m.temp.With(l).Set(float64(d.TemperatureC))
		h := 0.0
		if d.Healthy {
			h = 1
		}
		m.healthy.With(l).Set(h)
	}
}

func toSchedulerGPUs(devs []gpu.Device) []scheduler.GPU {
	out := make([]scheduler.GPU, 0, len(devs))
	for _, d := range devs {
		g := scheduler.GPU{Index: d.Index, UUID: d.UUID, Model: d.Model, MemoryMB: d.MemoryMB, Utilization: d.Utilization,
			MemoryUsedMB: d.MemoryUsedMB, TemperatureC: d.TemperatureC}
		if !d.Healthy {
			g.Unhealthy = d.Problem
			if g.Unhealthy == "" {
				g.Unhealthy = "reported unhealthy by the driver"
			}
		}
		out = append(out, g)
	}
	return out
}

// moved reports whether readings changed enough to be worth a Raft entry,
// or health changed at all (health first: it decides placement).
func moved(old, now []scheduler.GPU) (health, readings bool) {
	if len(old) != len(now) {
		return true, true
	}
	for i := range now {
		o, n := old[i], now[i]
		if o.Unhealthy != n.Unhealthy {
			health = true
		}
		if math.Abs(o.Utilization-n.Utilization) >= 10 || absInt(o.TemperatureC-n.TemperatureC) >= 5 ||
			(n.MemoryMB > 0 && absInt(o.MemoryUsedMB-n.MemoryUsedMB)*20 >= n.MemoryMB) {
			readings = true
		}
	}
	return health, readings
}

func absInt(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// watchGPUs samples the GPUs, reacts to faults at once (the jobs on a
// failed GPU are stopped and handed back; the GPU is marked out of service
// for placement) and keeps the telemetry current. It runs for the node's
// life.
func (n *Node) watchGPUs(ctx context.Context) {
	faults := make(chan gpu.Fault, 16)
	if w, ok := n.gpus.(gpu.Watcher); ok {
		go w.Watch(ctx, faults)
	}
	every, publish := telemetryEvery, publishEvery
	if n.cfg.FastTimings {
		every, publish = 200*time.Millisecond, time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var publishedAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-faults:
			// The sample below sees the device (or its MIG slices)
			// unhealthy and stops what runs there.
			n.log.Error("gpu out of service", "gpu", f.Index, "uuid", f.UUID, "problem", f.Problem)
		case <-tick.C:
		}
		devs, err := n.gpus.Devices(ctx)
		if err != nil {
			n.log.Warn("gpu telemetry", "err", err)
			continue
		}
		if len(devs) == 0 {
			continue
		}
		n.gpuMetrics.set(devs)
		for _, d := range devs {
			if !d.Healthy {
				n.worker.StopForGPU(d.Index, d.Problem) // no-op once stopped
			}
		}
		now := toSchedulerGPUs(devs)
		// Compare with what the state holds for this node (the registration
		// or the last update), not with a first sample: a fault before it
		// must still be written.
		rec, ok := n.fsm.Node(n.id)
		if !ok || rec.Incarnation != n.incarnation {
			continue // not registered yet: the registration will carry it
		}
		health, readings := moved(rec.GPUs, now)
		if !health && !(readings && time.Since(publishedAt) >= publish) {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = n.Apply(actx, &scheduler.UpdateGPUs{At: n.cfg.Clock.Now(), Node: n.id, GPUs: now})
		cancel()
		switch {
		case err == nil:
			publishedAt = time.Now()
		case errors.Is(err, scheduler.ErrNotFound):
			// Not registered yet: the registration carries the readings.
		default:
			n.log.Warn("gpu state not recorded; retrying", "err", err)
		}
	}
}
