// Package tlsutil owns the API's TLS: the server configuration, whose
// certificate is read again when its files change (so operators rotate it
// without a restart), the client side's CA pool, and the small private CA
// behind `pwmesh tls ca create` and `pwmesh tls cert create` (ECDSA P-256).
package tlsutil
