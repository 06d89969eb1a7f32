package docker

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// workloadDockerfile builds the built-in workload's image; it is the same
// text as build/workload/Dockerfile, which `make build` uses.
const workloadDockerfile = `# The built-in workload's image: the static pwmesh binary and nothing else.
# ` + "`make build`" + ` and the docker executor (EnsureImage) build it from a context
# holding the binary as pwmesh-static; nothing is pulled from a registry.
# node/worker/docker keeps a copy of this file (a test checks they match).
FROM scratch
COPY pwmesh-static /pwmesh
USER 65534:65534
WORKDIR /pwm
ENTRYPOINT ["/pwmesh", "workload", "run", "--root", "/pwm"]
`

// EnsureImage makes sure the workload image exists and was built from
// staticBinary (a pwmesh built with CGO_ENABLED=0): it builds the image
// through the engine when it is missing, or when its pwmesh.workload.sha256
// label names another binary. With staticBinary "" or absent, an existing
// image is used as it is.
func (e *Executor) EnsureImage(ctx context.Context, staticBinary string) error {
	e.buildMu.Lock()
	defer e.buildMu.Unlock()
	name := e.cfg.WorkloadImage
	img, err := e.c.imageInspect(ctx, name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	have := err == nil
	if staticBinary == "" {
		if have {
			return nil
		}
		return fmt.Errorf("%w: the workload image %s, and no static pwmesh binary was given to build it from (run make build)", ErrImageMissing, name)
	}
	sum, err := checkStatic(staticBinary)
	if err != nil {
		if have {
			if !errors.Is(err, os.ErrNotExist) {
				e.log.Warn("docker: using the workload image as it is", "image", name, "err", err)
			}
			return nil
		}
		return fmt.Errorf("docker: the workload image %s is missing and cannot be built: %w (run make build, which builds bin/%s and the image)", name, err, StaticBinaryName)
	}
	if have && img.Config.Labels[LabelBinary] == sum {
		return nil
	}
	why := "missing"
	if have {
		why = "built from another binary"
	}
	e.log.Info("docker: building the workload image", "image", name, "why", why, "binary", staticBinary)
	labels := map[string]string{LabelImage: "workload", LabelBinary: sum}
	files := []contextFile{{Name: StaticBinaryName, Path: staticBinary, Mode: 0o755}}
	var out strings.Builder
	if err := e.c.build(ctx, name, labels, workloadDockerfile, files, &out); err != nil {
		e.log.Warn("docker: workload image build output", "output", out.String())
		return err
	}
	if have {
		// The stale image lost its tag; it goes unless a container still
		// uses it.
		if err := e.c.imageRemove(ctx, img.ID, false); err != nil {
			e.log.Debug("docker: remove the stale workload image", "image", img.ID, "err", err)
		}
	}
	return nil
}

// checkStatic returns the hex SHA-256 of a binary after checking that it
// is a statically linked ELF file (a scratch image has no dynamic loader).
func checkStatic(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil {
		return "", fmt.Errorf("%s is not an executable: %w", path, err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked; build it with CGO_ENABLED=0", path)
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
