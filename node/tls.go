package node

import (
	"net"
	"net/http"

	"github.com/pwmesh/pwmesh/node/tlsutil"
)

// openTLS reads the API's certificate when --tls-cert and --tls-key are
// set; the API is then served over HTTPS only.
func (n *Node) openTLS() error {
	if n.cfg.TLSCert == "" {
		return nil
	}
	c, err := tlsutil.ServerConfig(n.cfg.TLSCert, n.cfg.TLSKey, n.log)
	if err != nil {
		return &ConfigError{err}
	}
	n.tls = c
	return nil
}

// serveHTTP serves the API on ln: over TLS when the node has a
// certificate (a plain HTTP request then gets Go's 400 "Client sent an
// HTTP request to an HTTPS server"), else in clear.
func (n *Node) serveHTTP(srv *http.Server, ln net.Listener) error {
	if n.tls == nil {
		return srv.Serve(ln)
	}
	srv.TLSConfig = n.tls.Clone()
	return srv.ServeTLS(ln, "", "")
}

// scheme is the API's URL scheme: https with a certificate, else http.
func (n *Node) scheme() string {
	if n.tls != nil {
		return "https"
	}
	return "http"
}
