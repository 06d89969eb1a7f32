package storage

// Replication is how far the index is from the durability the cluster
// wants.
type Replication struct {
	// Objects is how many objects the index lists (tombstoned ones
	// excluded).
	Objects int
	// ShortOfCopies is how many of them fewer live nodes hold than the
	// cluster wants: what the leader's repair loop works through. It is
	// read from the replicated index, so every node would count the same.
	ShortOfCopies int
}

// Replication scans the index as of now.
func (s *Storage) Replication() Replication {
	var r Replication
	live, want := s.peers.Live(), s.state.WantCopies()
	for _, b := range s.state.Blobs() {
		if s.state.Tombstoned(b.CID) {
			continue
		}
		r.Objects++
		if s.missingAmong(b, live, want) > 0 {
			r.ShortOfCopies++
		}
	}
	return r
}

// MirrorQueue is this node's part of the uploads to the object store.
type MirrorQueue struct {
	// Pending is how many objects this node has yet to upload (queued,
	// uploading or waiting to retry; 0 without a mirror). A restart
	// forgets the queue and enqueues again what the index lists as not
	// mirrored.
	Pending int
	// Failures is how many upload attempts failed since the node started
	// (retried or given up).
	Failures uint64
}

// MirrorQueue reads the upload queue as of now.
func (s *Storage) MirrorQueue() MirrorQueue {
	if s.up.q == nil {
		return MirrorQueue{}
	}
	return MirrorQueue{Pending: s.up.q.Pending(), Failures: s.up.q.Failures()}
}
