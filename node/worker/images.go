package worker

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/pwmesh/pwmesh/scheduler"
)

// ErrImageNotAllowed: a job names an image that its tier may not run
// here (job error code "image_not_allowed").
var ErrImageNotAllowed = errors.New("image not allowed")

// ImagePolicy says which container images jobs may name, by tier. The
// built-in workload (no image, or Builtin by name) is open to every job;
// any other image only to jobs above the free tier (priority paid or
// sprint: a free key may submit nothing else), and only when it matches
// one of Allowed. The zero value allows the built-in workload alone.
type ImagePolicy struct {
	// Builtin is the built-in workload's image name (the docker
	// executor's workload image), which any job may name.
	Builtin string
	// Allowed are patterns of the images paid and sprint jobs may name:
	// an exact reference ("registry/org/solver:1.2"), a repository that
	// matches any of its tags and digests ("registry/org/solver"), or a
	// path.Match pattern ("registry/org/*": every repository directly
	// under registry/org, any tag; a * never crosses a /).
	Allowed []string
}

// NewImagePolicy checks the patterns.
func NewImagePolicy(builtin string, allowed []string) (ImagePolicy, error) {
	for _, p := range allowed {
		if strings.TrimSpace(p) == "" {
			return ImagePolicy{}, errors.New("allowed images: an empty pattern")
		}
		if _, err := path.Match(p, ""); err != nil {
			return ImagePolicy{}, fmt.Errorf("allowed images: pattern %q: %w", p, err)
		}
	}
	return ImagePolicy{Builtin: builtin, Allowed: append([]string(nil), allowed...)}, nil
}

// Check reports whether a job of the given priority may run in image ("":
// the built-in workload): nil, or an error wrapping ErrImageNotAllowed
// whose text a user can act on.
func (p ImagePolicy) Check(priority, image string) error {
	if image == "" || image == p.Builtin {
		return nil
	}
	if priority != scheduler.PriorityPaid && priority != scheduler.PrioritySprint {
		return fmt.Errorf("%w: free-tier jobs run only the built-in workload, not image %q", ErrImageNotAllowed, image)
	}
	repo := repository(image)
	for _, pat := range p.Allowed {
		if ok, _ := path.Match(pat, image); ok {
			return nil
		}
		if !hasTagOrDigest(pat) {
			if ok, _ := path.Match(pat, repo); ok {
				return nil
			}
		}
	}
	if len(p.Allowed) == 0 {
		return fmt.Errorf("%w: this mesh runs no job images (its operator allows none: allowed_images)", ErrImageNotAllowed)
	}
	return fmt.Errorf("%w: image %q matches none of the images this mesh allows (%s)", ErrImageNotAllowed, image, strings.Join(p.Allowed, ", "))
}

// repository is an image reference without its tag or digest.
func repository(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref
}

func hasTagOrDigest(ref string) bool { return repository(ref) != ref }
