// Package mesh owns a node's networking with its peers: a libp2p host whose
// identity persists in the data directory, hashicorp/memberlist membership
// and failure detection with each node's metadata, Raft RPCs carried over
// libp2p streams, a small request/response RPC layer, and gossipsub
// announcements.
//
// Everything listens on one IP only (Config.Bind) and on TCP only for
// libp2p. With a cluster key, libp2p runs as a private network (pnet PSK)
// and memberlist encrypts and verifies all gossip, so a node without the key
// can neither join nor read anything.
//
// For tests, Block and Unblock cut this node off from chosen members, on
// libp2p and on gossip, as a network partition would (partition.go).
//
// The package knows nothing of jobs, scheduling or storage: it moves bytes
// between peers and reports who is there. Gossip is a hint; anything that
// must be agreed goes through Raft (see RaftTransport).
package mesh
