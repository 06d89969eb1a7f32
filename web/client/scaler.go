package client

import (
	"context"
	"net/http"
	"time"
)

// Scaler is GET /scaler: the leader's autoscaler (docs/scaling.md).
type Scaler struct {
	Mode       string          `json:"mode"`
	Min        int             `json:"min"`
	Max        int             `json:"max"`
	Current    int             `json:"current"`
	Desired    int             `json:"desired"`
	Starting   int             `json:"starting"`
	Reason     string          `json:"reason"`
	LastAction *ScalingAction  `json:"last_action"`
	Pending    *ScalingAction  `json:"pending,omitempty"`
	Recent     []ScalingAction `json:"recent"`
	NextTry    *time.Time      `json:"next_try,omitempty"`
}

// ScalingAction is one of the scaler's actions.
type ScalingAction struct {
	ID       uint64    `json:"id"`
	At       time.Time `json:"at"`
	Add      int       `json:"add"`
	Remove   []string  `json:"remove"`
	Pool     string    `json:"pool,omitempty"`
	GPUClass string    `json:"gpu_class,omitempty"`
	Done     bool      `json:"done"`
	OK       bool      `json:"ok"`
	Error    string    `json:"error"`
}

// Scaler returns the autoscaler's state (admin key).
func (c *Client) Scaler(ctx context.Context) (Scaler, error) {
	var s Scaler
	err := c.doJSON(ctx, request{method: http.MethodGet, path: "/scaler"}, &s)
	return s, err
}
