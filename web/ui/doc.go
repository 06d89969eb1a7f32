// Package ui is the web UI every node serves under /ui/ (CONTRACT.md §7):
// server-rendered pages (html/template, so every string a user supplied
// renders as text), one style sheet and one small script, all embedded in
// the binary; no build step, nothing fetched at run time.
//
// It owns sign-in, sessions and their protection against cross-site
// requests, and the pages. It holds no state and reads nothing itself:
// every page is made of calls to the node's HTTP API (package web),
// in-process, with the session's API key as the bearer, so that tenant
// isolation, quotas, metering and revocation apply to people exactly as
// to scripts. /ui/api/... is the same API for the pages' script.
//
// A session is a cookie sealed with AES-GCM under a key that every node
// derives from the secret they share (DeriveSessionKey), so that any node
// accepts a session another node started. StartSession is where every
// sign-in method ends (the API-key form here; OpenID Connect next).
//
// The node package builds a UI with New and serves Handler under /ui/;
// package web never imports this one.
package ui
