package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultHost is the engine's address when neither Config.Host nor
// $DOCKER_HOST names one.
const DefaultHost = "unix:///var/run/docker.sock"

// Engine API versions: the oldest this client speaks (Docker 20.10) and the
// newest it asks for when the engine offers more.
const (
	minAPIVersion = "1.41"
	maxAPIVersion = "1.51"
)

// ErrNotFound is the engine's 404: no such container or image.
var ErrNotFound = errors.New("docker: not found")

// apiError is an answer of the engine other than 2xx.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("docker engine: %s (HTTP %d)", e.Message, e.Status)
}

func (e *apiError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// client is the part of the Docker Engine API the executor uses: JSON over
// HTTP on a unix socket (or plain TCP, as tests' fake engines use).
type client struct {
	http *http.Client
	base string // scheme and authority, e.g. http://docker

	mu      sync.Mutex
	version string // negotiated API version, once known
}

// newClient parses host: unix:///path or tcp://host:port ("" means
// $DOCKER_HOST, else DefaultHost).
func newClient(host string) (*client, error) {
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		host = DefaultHost
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("docker: host %q: %w", host, err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}
	c := &client{http: &http.Client{Transport: tr}}
	switch u.Scheme {
	case "unix":
		path := u.Path
		if path == "" {
			return nil, fmt.Errorf("docker: host %q has no socket path", host)
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		c.base = "http://docker"
	case "tcp", "http":
		if os.Getenv("DOCKER_TLS_VERIFY") != "" {
			return nil, fmt.Errorf("docker: host %q: TLS to the engine is not supported; use its unix socket", host)
		}
		c.base = "http://" + u.Host
	default:
		return nil, fmt.Errorf("docker: host %q: want unix:///path or tcp://host:port", host)
	}
	return c, nil
}

// apiVersion asks the engine once which API version it speaks and keeps
// the highest both sides know.
func (c *client) apiVersion(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version != "" {
		return c.version, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/version", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("docker: engine not reachable: %w", err)
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return "", err
	}
	var v struct {
		APIVersion string `json:"ApiVersion"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return "", fmt.Errorf("docker: version: %w", err)
	}
	switch {
	case versionLess(v.APIVersion, minAPIVersion):
		return "", fmt.Errorf("docker: the engine speaks API %s; pwmesh needs %s or newer (Docker 20.10+)", v.APIVersion, minAPIVersion)
	case versionLess(maxAPIVersion, v.APIVersion):
		c.version = maxAPIVersion
	default:
		c.version = v.APIVersion
	}
	return c.version, nil
}

// versionLess compares dotted API versions such as 1.41 and 1.9.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// do sends one request to /v<version><path>; body, if not nil and not an
// io.Reader, is sent as JSON. A non-2xx answer becomes an *apiError.
func (c *client) do(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	v, err := c.apiVersion(ctx)
	if err != nil {
		return nil, err
	}
	var (
		r     io.Reader
		ctype string
	)
	switch b := body.(type) {
	case nil:
	case io.Reader:
		r, ctype = b, "application/x-tar"
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		r, ctype = bytes.NewReader(buf), "application/json"
	}
	u := c.base + "/v" + v + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("docker: %s %s: %w", method, path, err)
	}
	if err := checkStatus(resp); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// call is do for answers that are one JSON value (decoded into out, if
// not nil) or nothing.
func (c *client) call(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.do(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("docker: %s %s: %w", method, path, err)
	}
	return nil
}

func checkStatus(resp *http.Response) error {
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotModified {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var m struct{ Message string }
	if json.Unmarshal(b, &m) != nil || m.Message == "" {
		m.Message = strings.TrimSpace(string(b))
	}
	return &apiError{Status: resp.StatusCode, Message: m.Message}
}

// ping reports whether the engine answers.
func (c *client) ping(ctx context.Context) error {
	_, err := c.apiVersion(ctx)
	return err
}

// imageInfo is what the executor reads of an image.
type imageInfo struct {
	ID     string `json:"Id"`
	Config struct {
		Labels  map[string]string
		Volumes map[string]struct{}
	}
}

func (c *client) imageInspect(ctx context.Context, name string) (imageInfo, error) {
	var img imageInfo
	err := c.call(ctx, http.MethodGet, "/images/"+url.PathEscape(name)+"/json", nil, nil, &img)
	return img, err
}

// imageRemove untags and removes an image; force removes it even where a
// stopped container or another tag uses it.
func (c *client) imageRemove(ctx context.Context, name string, force bool) error {
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	return c.call(ctx, http.MethodDelete, "/images/"+url.PathEscape(name), q, nil, nil)
}

// contextFile is one file of a build context.
type contextFile struct {
	Name string // path in the context
	Data []byte // contents, or
	Path string // a host file to copy
	Mode int64
}

// build builds an image from a Dockerfile and files with the engine's
// classic builder (no BuildKit, so no frontend image is pulled) and tags it.
func (c *client) build(ctx context.Context, tag string, labels map[string]string, dockerfile string, files []contextFile, log io.Writer) error {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeContext(pw, dockerfile, files))
	}()
	defer pr.Close()
	lb, err := json.Marshal(labels)
	if err != nil {
		return err
	}
	q := url.Values{"t": {tag}, "rm": {"1"}, "forcerm": {"1"}, "labels": {string(lb)}, "dockerfile": {"Dockerfile"}}
	resp, err := c.do(ctx, http.MethodPost, "/build", q, io.Reader(pr))
	if err != nil {
		return fmt.Errorf("docker: build %s: %w", tag, err)
	}
	defer resp.Body.Close()
	// The answer is a stream of JSON messages; a failed step says "error".
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Stream string
			Error  string
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("docker: build %s: %w", tag, err)
		}
		if m.Error != "" {
			return fmt.Errorf("docker: build %s: %s", tag, strings.TrimSpace(m.Error))
		}
		if log != nil && m.Stream != "" {
			_, _ = io.WriteString(log, m.Stream)
		}
	}
}

func writeContext(w io.Writer, dockerfile string, files []contextFile) error {
	tw := tar.NewWriter(w)
	put := func(name string, mode int64, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: size, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	if err := put("Dockerfile", 0o644, int64(len(dockerfile)), strings.NewReader(dockerfile)); err != nil {
		return err
	}
	for _, f := range files {
		if f.Path == "" {
			if err := put(f.Name, f.Mode, int64(len(f.Data)), bytes.NewReader(f.Data)); err != nil {
				return err
			}
			continue
		}
		src, err := os.Open(f.Path)
		if err != nil {
			return err
		}
		st, err := src.Stat()
		if err == nil {
			err = put(f.Name, f.Mode, st.Size(), src)
		}
		src.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// The parts of a container's configuration the executor sets
// (POST /containers/create).
type (
	containerConfig struct {
		Image      string
		User       string
		Env        []string          `json:",omitempty"`
		Labels     map[string]string `json:",omitempty"`
		Tty        bool
		OpenStdin  bool
		HostConfig hostConfig
	}
	hostConfig struct {
		NetworkMode    string
		ReadonlyRootfs bool
		SecurityOpt    []string
		CapDrop        []string
		Privileged     bool
		IpcMode        string
		PidsLimit      int64
		Memory         int64
		MemorySwap     int64
		NanoCPUs       int64             `json:"NanoCpus"`
		Tmpfs          map[string]string `json:",omitempty"`
		Mounts         []mount           `json:",omitempty"`
		DeviceRequests []deviceRequest   `json:",omitempty"`
		LogConfig      logConfig
		AutoRemove     bool
	}
	mount struct {
		Type     string
		Source   string
		Target   string
		ReadOnly bool
	}
	deviceRequest struct {
		Driver       string
		Count        int
		DeviceIDs    []string
		Capabilities [][]string
	}
	logConfig struct {
		Type   string
		Config map[string]string `json:",omitempty"`
	}
)

func (c *client) containerCreate(ctx context.Context, name string, cfg containerConfig) (string, error) {
	var out struct {
		ID string `json:"Id"`
	}
	q := url.Values{}
	if name != "" {
		q.Set("name", name)
	}
	if err := c.call(ctx, http.MethodPost, "/containers/create", q, cfg, &out); err != nil {
		return "", fmt.Errorf("docker: create container: %w", err)
	}
	return out.ID, nil
}

func (c *client) containerStart(ctx context.Context, id string) error {
	if err := c.call(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil, nil); err != nil {
		return fmt.Errorf("docker: start container: %w", err)
	}
	return nil
}

// containerWait blocks until the container is not running and returns its
// exit status.
func (c *client) containerWait(ctx context.Context, id string) (int, error) {
	var out struct {
		StatusCode int
		Error      *struct{ Message string }
	}
	if err := c.call(ctx, http.MethodPost, "/containers/"+id+"/wait", url.Values{"condition": {"not-running"}}, nil, &out); err != nil {
		return 0, fmt.Errorf("docker: wait for container: %w", err)
	}
	if out.Error != nil && out.Error.Message != "" {
		return out.StatusCode, fmt.Errorf("docker: wait for container: %s", out.Error.Message)
	}
	return out.StatusCode, nil
}

// containerLogs follows a container's stdout and stderr into w until it
// stops (or ctx ends).
func (c *client) containerLogs(ctx context.Context, id string, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, "/containers/"+id+"/logs", url.Values{"follow": {"1"}, "stdout": {"1"}, "stderr": {"1"}}, nil)
	if err != nil {
		return fmt.Errorf("docker: logs: %w", err)
	}
	defer resp.Body.Close()
	return demux(resp.Body, w)
}

// demux copies the payload of a multiplexed stream (a container without a
// TTY): frames of an 8-byte header — stream type, three zero bytes, a
// big-endian uint32 length — followed by that many bytes.
func demux(r io.Reader, w io.Writer) error {
	var h [8]byte
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		n := int64(binary.BigEndian.Uint32(h[4:]))
		if _, err := io.CopyN(w, r, n); err != nil {
			return err
		}
	}
}

// containerKill sends SIGKILL; a container already stopped is no error.
func (c *client) containerKill(ctx context.Context, id string) error {
	err := c.call(ctx, http.MethodPost, "/containers/"+id+"/kill", url.Values{"signal": {"SIGKILL"}}, nil, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return nil
	}
	return err
}

// containerRemove removes a container, running or not, with its anonymous
// volumes; one already gone is no error.
func (c *client) containerRemove(ctx context.Context, id string) error {
	err := c.call(ctx, http.MethodDelete, "/containers/"+id, url.Values{"force": {"1"}, "v": {"1"}}, nil, nil)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict && strings.Contains(ae.Message, "already in progress") {
		return nil
	}
	return err
}

// containerState is what the executor reads of a container after it ran.
type containerState struct {
	State struct {
		Running   bool
		OOMKilled bool
		ExitCode  int
	}
	HostConfig hostConfig
	Mounts     []struct{ Type, Destination string }
	Config     struct {
		User   string
		Env    []string
		Labels map[string]string
	}
}

func (c *client) containerInspect(ctx context.Context, id string) (containerState, error) {
	var out containerState
	err := c.call(ctx, http.MethodGet, "/containers/"+id+"/json", nil, nil, &out)
	return out, err
}

// containerSummary is one entry of GET /containers/json.
type containerSummary struct {
	ID     string `json:"Id"`
	Names  []string
	State  string
	Labels map[string]string
}

// containerList lists every container, running or not, carrying all the
// given labels ("key=value").
func (c *client) containerList(ctx context.Context, labels ...string) ([]containerSummary, error) {
	f, err := json.Marshal(map[string][]string{"label": labels})
	if err != nil {
		return nil, err
	}
	var out []containerSummary
	if err := c.call(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(f)}}, nil, &out); err != nil {
		return nil, fmt.Errorf("docker: list containers: %w", err)
	}
	return out, nil
}
