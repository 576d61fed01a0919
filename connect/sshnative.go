package connect

import (
	"context"
	"crypto/sha256"
	binenc "encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/mitostar/mitostar/core"
)

// nativeSSH is ssh with transport="native": golang.org/x/crypto/ssh in
// this process instead of an ssh program per connection. It takes the
// same keywords: mitostar's options and ssh_args are resolved with
// `ssh -G` into the configuration OpenSSH would use, which it then
// follows (sshconfig.go); host keys (sshhostkeys.go) and authentication
// (sshauth.go) follow OpenSSH's rules and fail with the same errors.
// Contexts to the same host share one connection (sshpool.go); each is
// a session running the bootstrap stub.
type nativeSSH struct {
	*sshTransport
}

// maxJumpHops bounds a ProxyJump chain, jump hosts' own ProxyJump
// included (a loop in ~/.ssh/config would never end).
const maxJumpHops = 8

func (t *nativeSSH) Start(ctx context.Context, env *core.StartEnv) (*core.Conn, error) {
	began := time.Now()
	stub, err := NewStub()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*core.Conn, error) {
		noise := ""
		var he *hopError
		if errors.As(err, &he) {
			err, noise = he.err, he.noise
		}
		return nil, &core.StreamError{Op: "connect " + env.Name, Err: fmt.Errorf("%s: %w", t.describe(), err), Noise: noise}
	}
	cfg, err := resolveSSHConfig(ctx, t.sshPath, t.options(), t.hostname)
	if err != nil {
		return fail(err)
	}
	d := &dialer{r: env.Router, sshPath: t.sshPath, logf: t.debugf(env)}
	conn, err := d.connect(ctx, cfg, t.options(), t.password, t.havePassword, 0)
	if err != nil {
		return fail(err)
	}
	s, err := openSessionCtx(ctx, conn, cfg, stub.Command(), t.debugf(env))
	if err != nil {
		return fail(err)
	}
	return bootstrap(ctx, env, s, stub, startSpec{describe: t.describe()}, began)
}

// debugf logs at debug level under the new context's name.
func (t *nativeSSH) debugf(env *core.StartEnv) func(string, ...any) {
	return func(format string, args ...any) {
		env.Router.Logger().Debug(fmt.Sprintf(format, args...), "context", env.Name)
	}
}

// A dialer opens (or finds in the pool) the connections of one Start.
type dialer struct {
	r       *core.Router
	sshPath string // resolves the jump hosts' configuration
	logf    func(string, ...any)
}

// A hopError is a connection's failure with the lines its error quotes
// (ssh's words for the same failure).
type hopError struct {
	err   error
	noise string
}

func (e *hopError) Error() string { return e.err.Error() }
func (e *hopError) Unwrap() error { return e.err }

// connect returns a reference to an open connection for cfg (args are
// the options cfg was resolved with, for its jump hosts), dialing it
// and its jump hosts if the pool has none. depth counts jump hosts.
func (d *dialer) connect(ctx context.Context, cfg *sshConfig, args []string, password string, havePassword bool, depth int) (*sshConn, error) {
	var hops []jumpHop
	if cfg.proxyJump != "" {
		var err error
		if hops, err = parseProxyJump(cfg.proxyJump); err != nil {
			return nil, err
		}
		if depth+len(hops) > maxJumpHops {
			return nil, fmt.Errorf("ProxyJump: more than %d jump hosts (a loop in the ssh configuration?)", maxJumpHops)
		}
	}
	label := cfg.user + "@" + cfg.addr()
	conn, reused, err := poolOf(d.r).acquire(ctx, poolKeyOf(cfg, password, havePassword), label, cfg.serverAliveInterval, cfg.serverAliveCountMax, func(ctx context.Context, phase func(string)) dialResult {
		var via *sshConn
		if len(hops) > 0 {
			phase("connecting to the jump host " + hopSpec(hops[len(hops)-1]) + " for " + cfg.addr())
			var err error
			if via, err = d.connectJump(ctx, hops, args, depth); err != nil {
				return dialResult{err: err}
			}
		}
		res := d.dial(ctx, cfg, via, password, havePassword, phase)
		if res.err != nil && via != nil {
			via.pool.release(via)
			res.via = nil
		}
		return res
	})
	if err != nil {
		return nil, err
	}
	if reused {
		d.logf("ssh: sharing the open connection to %s", label)
	}
	return conn, nil
}

// connectJump connects to the last of hops through the ones before it,
// as ssh -J does: the hop's own configuration applies, with the user
// and port the jump list gives.
func (d *dialer) connectJump(ctx context.Context, hops []jumpHop, args []string, depth int) (*sshConn, error) {
	last := hops[len(hops)-1]
	hargs := hopArgs(args, last)
	if len(hops) > 1 {
		var earlier []string
		for _, h := range hops[:len(hops)-1] {
			earlier = append(earlier, hopSpec(h))
		}
		hargs = append(hargs, "-J", strings.Join(earlier, ","))
	}
	hcfg, err := resolveSSHConfig(ctx, d.sshPath, hargs, last.host)
	if err != nil {
		return nil, err
	}
	via, err := d.connect(ctx, hcfg, hargs, "", false, depth+len(hops))
	if err != nil {
		he := &hopError{err: err}
		errors.As(err, &he)
		return nil, &hopError{err: fmt.Errorf("through jump host %s@%s: %w", hcfg.user, hcfg.addr(), he.err), noise: he.noise}
	}
	return via, nil
}

func hopSpec(h jumpHop) string {
	s := h.host
	if strings.Contains(s, ":") {
		s = "[" + s + "]"
	}
	if h.user != "" {
		s = h.user + "@" + s
	}
	if h.port != 0 {
		s += fmt.Sprintf(":%d", h.port)
	}
	return s
}

// poolKeyOf identifies the connections that may be shared: the same
// place, user, credentials and host key rules. The password enters as
// its hash.
func poolKeyOf(c *sshConfig, password string, havePassword bool) string {
	pw := ""
	if havePassword {
		sum := sha256.Sum256([]byte(password))
		pw = hex.EncodeToString(sum[:])
	}
	return fmt.Sprintf("%q", []any{c.host, c.hostname, c.port, c.user, c.identityFiles, c.certificateFiles,
		c.identitiesOnly, c.identityAgent, c.proxyJump, c.strictHostKeyChecking, c.userKnownHosts,
		c.globalKnownHosts, c.hostKeyAlias, c.pubkeyAuth, c.passwordAuth, c.kbdInteractive, pw})
}

// dial opens the TCP connection (directly or through via) and runs the
// SSH handshake, host key check and authentication.
func (d *dialer) dial(ctx context.Context, cfg *sshConfig, via *sshConn, password string, havePassword bool, phase func(string)) dialResult {
	keys, err := newHostKeys(cfg, func(msg string) { d.r.Emit(slog.LevelWarn, msg) })
	if err != nil {
		return dialResult{err: err}
	}
	auth := &sshAuth{ctx: ctx, cfg: cfg, password: password, havePassword: havePassword, keys: keys, logf: d.logf}
	defer auth.close()
	addr := cfg.addr()
	var nc net.Conn
	switch {
	case via != nil:
		phase("connecting to " + addr + " through " + via.label)
		nc, err = via.client.DialContext(ctx, "tcp", addr)
	case cfg.proxyCommand != "":
		phase("connecting to " + addr + " through its ProxyCommand")
		nc, err = proxyCommand(ctx, cfg, d.logf)
	default:
		phase("connecting to " + addr)
		nd := net.Dialer{Timeout: cfg.connectTimeout, KeepAlive: -1}
		nc, err = nd.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return dialResult{err: err}
	}
	// The handshake has no context of its own: the deadline and a
	// cancellation close it.
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	phase("in the SSH handshake with " + addr + " (key exchange and login as " + cfg.user + ")")
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, auth.clientConfig())
	stopped := stop()
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out in the SSH handshake with %s (%v)", addr, err)
		} else if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", context.Cause(ctx), err)
		}
		err, noise := auth.failure(err)
		if pc, ok := nc.(*proxyConn); ok {
			pc.Close()
			noise = strings.TrimSpace(noise + "\n" + pc.stderr())
		}
		return dialResult{err: &hopError{err: err, noise: noise}}
	}
	if !stopped {
		sc.Close()
		return dialResult{err: context.Cause(ctx)}
	}
	nc.SetDeadline(time.Time{})
	if changed, why := keys.keyChanged(); changed {
		d.r.Emit(slog.LevelWarn, "ssh: "+why+"; connecting anyway (check_host_keys=\"ignore\")")
	}
	d.logf("ssh: connected to %s as %s", addr, cfg.user)
	return dialResult{client: ssh.NewClient(sc, chans, reqs), via: via}
}

// openSessionCtx is openSession, given up when ctx ends: a server may
// never answer. A session opened after that is closed at once.
func openSessionCtx(ctx context.Context, conn *sshConn, cfg *sshConfig, command string, logf func(string, ...any)) (*sshSession, error) {
	type opened struct {
		s   *sshSession
		err error
	}
	done := make(chan opened, 1)
	go func() {
		s, err := openSession(conn, cfg, command, logf)
		done <- opened{s, err}
	}()
	select {
	case o := <-done:
		return o.s, o.err
	case <-ctx.Done():
		go func() {
			if o := <-done; o.s != nil {
				o.s.kill()
			}
		}()
		if ctx.Err() == context.DeadlineExceeded {
			return nil, errors.New("timed out opening a session on the ssh connection to " + conn.label)
		}
		return nil, context.Cause(ctx)
	}
}

// An sshSession is one context's session on a native connection: its
// command is the bootstrap stub, its stdin and stdout the stream.
type sshSession struct {
	streamEnds
	conn *sshConn
	ch   ssh.Channel
	in   *sessionStdin
	logf func(string, ...any)

	commandLen int // the exec request's command, which crosses too

	closeOnce   sync.Once
	releaseOnce sync.Once
	statusMu    sync.Mutex
	status      string // how the command ended, once known
}

// openSession opens a session on conn running command. It takes over
// the caller's reference to conn, released when the session ends (or
// fails to start).
func openSession(conn *sshConn, cfg *sshConfig, command string, logf func(string, ...any)) (*sshSession, error) {
	ch, reqs, err := conn.client.OpenChannel("session", nil)
	if err != nil {
		conn.pool.release(conn)
		return nil, fmt.Errorf("opening an ssh session: %w", err)
	}
	s := &sshSession{conn: conn, ch: ch, logf: logf}
	s.in = &sessionStdin{ch: ch}
	s.stdin = s.in
	s.stdout = &sessionReader{r: ch, conn: conn}
	s.diag = ch.Stderr()
	s.exited = make(chan struct{})
	go s.serveRequests(reqs)
	// Environment requests need no answer (ssh sends them so): a server
	// that refuses one ignores it.
	for _, kv := range sessionEnv(cfg) {
		if _, err := ch.SendRequest("env", false, ssh.Marshal(&struct{ Name, Value string }{kv[0], kv[1]})); err != nil {
			s.kill()
			return nil, fmt.Errorf("ssh session: %w", err)
		}
	}
	s.commandLen = len(command)
	ok, err := ch.SendRequest("exec", true, ssh.Marshal(&struct{ Command string }{command}))
	if err == nil && !ok {
		err = errors.New("the server refused to run the command")
	}
	if err != nil {
		s.kill()
		return nil, fmt.Errorf("ssh session: %w", err)
	}
	return s, nil
}

// sessionEnv is what SendEnv (from this process's environment) and
// SetEnv ask the server to set, in that order.
func sessionEnv(cfg *sshConfig) [][2]string {
	var out [][2]string
	if len(cfg.sendEnv) > 0 {
		for _, kv := range os.Environ() {
			name, value, _ := strings.Cut(kv, "=")
			for _, pat := range cfg.sendEnv {
				if ok, _ := path.Match(pat, name); ok && !strings.HasPrefix(pat, "-") {
					out = append(out, [2]string{name, value})
					break
				}
			}
		}
	}
	return append(out, cfg.setEnv...)
}

// serveRequests reads the session's requests until the channel closes:
// the command's exit status or signal.
func (s *sshSession) serveRequests(reqs <-chan *ssh.Request) {
	defer close(s.exited)
	defer s.release()
	for req := range reqs {
		switch req.Type {
		case "exit-status":
			if len(req.Payload) >= 4 {
				s.setStatus(fmt.Sprintf("its command exited with status %d", binenc.BigEndian.Uint32(req.Payload)))
			}
		case "exit-signal":
			var sig struct {
				Signal     string
				CoreDumped bool
				Msg, Lang  string
			}
			if ssh.Unmarshal(req.Payload, &sig) == nil {
				s.setStatus("its command was killed by signal SIG" + sig.Signal)
			}
		}
		if req.WantReply {
			req.Reply(false, nil)
		}
	}
	if err := s.conn.lost(); err != nil {
		s.setStatus(err.Error())
	}
	s.logf("ssh session ended: %d bytes sent (command %d bytes)", s.in.n.Load(), s.commandLen)
}

func (s *sshSession) setStatus(st string) {
	s.statusMu.Lock()
	if s.status == "" {
		s.status = st
	}
	s.statusMu.Unlock()
}

// release gives the session's reference to the connection back.
func (s *sshSession) release() {
	s.releaseOnce.Do(func() { s.conn.pool.release(s.conn) })
}

// close ends stdin, which ends the child; the channel is closed for it
// if the child has not ended after killGrace. It does not block: the end
// of stdin waits for a write in progress (which the channel's close
// ends, if nothing else does).
func (s *sshSession) close() {
	s.closeOnce.Do(func() {
		go s.in.closeWrite()
		go func() {
			select {
			case <-s.exited:
			case <-time.After(killGrace):
				s.ch.Close()
			}
		}()
	})
}

// sessionStdin is a session's stdin: writes and their end (EOF) one at a
// time, as x/crypto's channel needs (its CloseWrite during a Write is a
// data race, and an EOF between the packets of a write ends the stream
// early). It counts what was written.
type sessionStdin struct {
	mu sync.Mutex
	ch ssh.Channel
	n  atomic.Int64
}

func (w *sessionStdin) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.ch.Write(p)
	w.n.Add(int64(n))
	return n, err
}

func (w *sessionStdin) closeWrite() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ch.CloseWrite()
}

// kill closes the channel at once.
func (s *sshSession) kill() {
	s.closeOnce.Do(func() {})
	s.ch.Close()
}

func (s *sshSession) exitStatus(d time.Duration) string {
	select {
	case <-s.exited:
	case <-time.After(d):
		return ""
	}
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	if s.status == "" {
		return "the ssh session closed"
	}
	return s.status
}

// sessionReader is a session's stdout: when the connection was lost
// under it, it ends with that cause rather than a plain end of file.
type sessionReader struct {
	r    io.Reader
	conn *sshConn
}

func (s *sessionReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF {
		if cause := s.conn.lost(); cause != nil {
			err = cause
		}
	}
	return n, err
}
