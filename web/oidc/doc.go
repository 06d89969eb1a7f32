// Package oidc signs people in through an OpenID Connect provider
// (CONTRACT.md §7): the web UI's "Sign in with ..." button and `pwmesh
// login` for the command line.
//
// It owns the authorization code flow with PKCE (S256), state and nonce;
// the verification of the ID token (signature, issuer, audience, expiry,
// nonce); the mapping of its claims to a tenant (a claim, by default
// pwmesh_tenant) and admin rights (a group); and the command line's
// pending sign-ins. It holds no keys and starts no sessions itself: the
// node mints a short-lived API key for the person (Deps.MintKey, a
// CreateKey through Raft) and the web UI starts the session
// (Deps.StartSession), so that a person's calls are a key's calls, with
// the same tenant isolation, quotas, metering and revocation.
//
// The flow's state travels in a cookie sealed with a key every node
// shares (DeriveStateKey), so the provider may send the browser back to
// any node of the mesh. A command-line sign-in waits in the memory of the
// node `pwmesh login` asked, whose external URL its link names.
//
// Paths (fixed: the redirect URI is registered with the provider):
//
//	GET  /ui/login/oidc?next=/ui/...  start a browser sign-in
//	GET  /ui/callback                 the provider's redirect
//	POST /ui/cli-login                start a command-line sign-in
//	GET  /ui/cli-login/{id}           the page the command line's link opens
//	POST /ui/cli-login/{id}           the person confirms: on to the provider
//	POST /ui/cli-login/poll           the command line waits for its key
//
// The package imports nothing of the UI (web/ui) or the node; the node
// serves Handler.Wrap around the UI when --oidc-issuer is set.
package oidc
