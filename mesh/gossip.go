package mesh

import (
	"context"
	"fmt"
	"slices"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

// MaxMessageBytes caps one Publish payload. gossipsub itself drops larger
// messages silently (Publish returns nil), so Publish checks first.
const MaxMessageBytes = 1 << 20

// subscriptionBuffer is the capacity of a Subscribe channel. A consumer that
// falls further behind loses messages (gossipsub drops them for a slow
// subscriber): gossip is a hint.
const subscriptionBuffer = 64

// Message is one gossip message.
type Message struct {
	From string // peer ID of the publisher (signed by it)
	Data []byte
}

func (m *Mesh) topic(name string) (*pubsub.Topic, error) {
	m.topicsMu.Lock()
	defer m.topicsMu.Unlock()
	if t, ok := m.topics[name]; ok {
		return t, nil
	}
	t, err := m.ps.Join(name)
	if err != nil {
		return nil, fmt.Errorf("mesh: join topic %q: %w", name, err)
	}
	m.topics[name] = t
	return t, nil
}

// Publish announces msg on topic. A message above MaxMessageBytes is refused
// with ErrTooLarge before anything is sent. Publishing to a topic no peer
// subscribes to is not an error: gossip is a hint, and delivery is never
// confirmed.
func (m *Mesh) Publish(ctx context.Context, topic string, msg []byte) error {
	if len(msg) > MaxMessageBytes {
		return fmt.Errorf("%w: message of %d bytes exceeds %d", ErrTooLarge, len(msg), MaxMessageBytes)
	}
	if m.ctx.Err() != nil {
		return ErrClosed
	}
	t, err := m.topic(topic)
	if err != nil {
		return err
	}
	if err := t.Publish(ctx, msg); err != nil {
		return fmt.Errorf("mesh: publish on %q: %w", topic, err)
	}
	return nil
}

// Subscribe delivers the messages published on topic, including this
// node's own (Message.From tells them apart), until ctx ends or the mesh
// closes; then the channel is closed.
func (m *Mesh) Subscribe(ctx context.Context, topic string) (<-chan Message, error) {
	if m.ctx.Err() != nil {
		return nil, ErrClosed
	}
	t, err := m.topic(topic)
	if err != nil {
		return nil, err
	}
	sub, err := t.Subscribe(pubsub.WithBufferSize(subscriptionBuffer))
	if err != nil {
		return nil, fmt.Errorf("mesh: subscribe to %q: %w", topic, err)
	}
	out := make(chan Message, subscriptionBuffer)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(m.ctx, cancel)
	forward := func() {
		defer close(out)
		defer stop()
		defer cancel()
		defer sub.Cancel()
		for {
			msg, err := sub.Next(ctx)
			if err != nil {
				return
			}
			select {
			case out <- Message{From: msg.GetFrom().String(), Data: msg.Data}:
			case <-ctx.Done():
				return
			}
		}
	}
	if !m.tasks.goOwned(forward) {
		sub.Cancel()
		stop()
		cancel()
		return nil, ErrClosed
	}
	return out, nil
}

// TopicPeers returns the peers known to subscribe to topic (this node
// excluded), sorted.
func (m *Mesh) TopicPeers(topic string) []string {
	t, err := m.topic(topic)
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range t.ListPeers() {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}
