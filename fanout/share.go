package fanout

import (
	"context"
	"fmt"
	"sync"
)

// Connection sharing. Hosts whose ssh connections are the same — the
// same user, host, port, key and options, as inventory aliases of one
// machine are — share one ssh connection, as Ansible's ControlPersist
// and ansible-mitogen's connection cache share theirs: the first host of
// such an endpoint connects over ssh, and every other one is a fork of
// that first context on the target (the same user on the same machine,
// started by the mitostar already running there: no ssh session, shell
// or bootstrap of its own). Each keeps its own context and host record.
// mitostar_multiplex=false gives a host a connection of its own.

// sharing is the session's endpoint table.
type sharing struct {
	mu      sync.Mutex
	leaders map[string]*conn // endpoint → the connection of its first host
}

// endpointKey names what makes two ssh hops the same connection.
func endpointKey(h *hop) string {
	kw := h.opts.Kwargs
	return fmt.Sprintf("%q", []any{kw["hostname"], kw["port"], kw["username"], kw["identity_file"], kw["password"],
		kw["ssh_path"], kw["ssh_args"], kw["check_host_keys"], kw["transport"], h.opts.ConnectTimeout})
}

// leaderFor returns the connection of the endpoint's first host, or nil
// when c is that first host.
func (s *Session) leaderFor(key string, c *conn) *conn {
	s.share.mu.Lock()
	defer s.share.mu.Unlock()
	if s.share.leaders == nil {
		s.share.leaders = map[string]*conn{}
	}
	if l, ok := s.share.leaders[key]; ok {
		return l
	}
	s.share.leaders[key] = c
	return nil
}

// waitLeader waits until the leader's login is settled; it returns its
// login context, or nil when the leader could not connect (the follower
// then makes its own connection, and gets its own error).
func waitLeader(ctx context.Context, l *conn) (*conn, error) {
	select {
	case <-l.loginDone:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	if l.login == nil {
		return nil, nil
	}
	return l, nil
}
