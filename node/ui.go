package node

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pwmesh/pwmesh/node/workload"
	"github.com/pwmesh/pwmesh/web/ui"
)

// newUI builds the web UI over the node's API (CONTRACT.md §7). Its
// session cookies are sealed with a key every node of the mesh derives
// alike, so that any node accepts a session another one started.
func (n *Node) newUI() (*ui.UI, error) {
	secret, err := n.uiSecret()
	if err != nil {
		return nil, err
	}
	key, err := ui.DeriveSessionKey(secret)
	if err != nil {
		return nil, err
	}
	return ui.New(ui.Config{
		SessionKey: key,
		Secure:     n.tls != nil,
		Clock:      n.cfg.Clock,
		Logger:     n.log,

		// "Sign in with ..." with --oidc-issuer (node/oidc.go).
		SignInProviders: n.signInProviders(),
	}, ui.Deps{
		API:      n.api.Handler(),
		Identify: n.api.Identify,
		JobTypes: uiJobTypes(),
	})
}

// uiSecret is what the UI's session key derives from: the cluster key,
// which every node of a mesh holds (outside --dev a node refuses to start
// without one); a --dev node without one is alone, and keeps a secret of
// its own in its data directory.
func (n *Node) uiSecret() ([]byte, error) {
	if len(n.clusterKey) > 0 {
		return n.clusterKey, nil
	}
	path := filepath.Join(n.cfg.DataDir, "ui-session-secret")
	s, err := loadOrCreate(path, func() string { return randHex(32) })
	if err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) < 16 {
		return nil, fmt.Errorf("node: %s is damaged: remove it (signed-in browsers then sign in again)", path)
	}
	return b, nil
}

// httpHandler serves the UI under /ui/ and the API everywhere else, on
// one listener.
func (n *Node) httpHandler() http.Handler {
	api, page := n.api.Handler(), n.ui.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, "/ui/") {
			page.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// uiParams describes each workload parameter for the submit form; every
// parameter of the registry has an entry (TestUIJobTypes).
var uiParams = map[string]ui.Param{
	"size":          {Kind: ui.ParamInt, Help: "Image side in pixels, 8 to 256."},
	"sampling":      {Kind: ui.ParamFloat, Help: "Measurements per pixel, above 0 and at most 1."},
	"seed":          {Kind: ui.ParamInt, Help: "Random seed, 0 or more."},
	"operator_seed": {Kind: ui.ParamInt, Help: "Seed of the measurement operator."},
	"severity":      {Kind: ui.ParamChoice, Choices: []string{"mild", "moderate", "severe"}, Help: "The gain/bias mismatch preset; or give gain and bias instead."},
	"gain":          {Kind: ui.ParamFloat, Help: "Detector gain, above 0 and at most 10."},
	"bias":          {Kind: ui.ParamFloat, Help: "Detector bias."},
	"noise":         {Kind: ui.ParamFloat, Help: "Measurement noise, 0 to 1."},
	"iterations":    {Kind: ui.ParamInt, Help: "FISTA-TV iterations, 1 to 2000."},
	"lambda":        {Kind: ui.ParamFloat, Help: "Weight of the TV prior, 0 or more."},
	"matrix":        {Kind: ui.ParamInt, Help: "Matrix side, 256 to 16384."},
	"repeats":       {Kind: ui.ParamInt, Help: "Products to time, 1 to 1000."},
}

// uiJobTypes are the workload registry's job types for the submit form,
// each parameter with its kind and the workload's default.
func uiJobTypes() []ui.JobType {
	var out []ui.JobType
	for _, s := range workload.Types() {
		defaults := map[string]json.RawMessage{}
		if b, err := json.Marshal(workload.DefaultParams(s.Name)); err == nil {
			_ = json.Unmarshal(b, &defaults)
		}
		t := ui.JobType{Name: s.Name, Summary: s.Summary, NeedsDataset: s.NeedsDataset, NeedsGPU: s.NeedsGPU}
		for _, name := range s.Params {
			p := uiParams[name]
			p.Name = name
			if raw, ok := defaults[name]; ok {
				p.Default = strings.Trim(string(raw), `"`)
			}
			if name == "severity" {
				p.Default = workload.DefaultSeverity
			}
			if _, err := strconv.ParseFloat(p.Default, 64); p.Kind != ui.ParamChoice && p.Default != "" && err != nil {
				p.Default = ""
			}
			t.Params = append(t.Params, p)
		}
		out = append(out, t)
	}
	return out
}
