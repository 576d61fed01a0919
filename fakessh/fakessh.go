// Package fakessh runs local programs that use ssh — rsync, scp, sftp,
// or anything that runs `ssh HOST COMMAND` — against a context of the
// tree instead of a host: whatever host the program names, the command
// runs in the target context, reached over the tree's existing
// connections (through via hops, sudo, containers: anything mitostar
// can reach), like Mitogen's mitogen.fakessh but with any number of
// concurrent invocations.
//
// scp and sftp run /usr/bin/ssh rather than the ssh on PATH, so Run
// passes them "-S" and the fake ssh unless their argv has a -S already.
//
// How: Run starts the program with a private directory first on its
// PATH holding `ssh`, a symlink to this very executable, and the
// environment variable MITOSTAR_ROLE=fakessh, so that the program's ssh
// is mitostar in the fakessh role. That process parses its command line
// as OpenSSH does and connects back to Run over a unix socket in a 0700
// temp directory, proving itself with a per-run random token. Run then
// calls "fakessh.exec" in the target, which starts `sh -c COMMAND` (or,
// for `-s sftp`, the target's sftp-server) in the user's home directory
// and connects its stdin and stdout to one byte stream (core.ByteStream)
// and its stderr to another; Run bridges them to the ssh process, along
// with signals and the exit status.
//
// Socket protocol (a private matter of one binary: both ends are this
// executable). Connection 1: the ssh process sends a hello record, Run
// answers with an accept record, then Run sends frames (type byte, u32
// length, data): 'o' stdout, 'e' stderr, 'x' exit status (u32), while
// the ssh process sends 's' frames (a signal number). Connection 2: a
// hello record naming the session, then the raw bytes of stdin, closed
// for writing at EOF. Records are a u32 length and CBOR.
package fakessh

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/lookpath"
)

// Environment variables read by the fakessh role.
const (
	envSocket = "MITOSTAR_FAKESSH_SOCKET"
	envToken  = "MITOSTAR_FAKESSH_TOKEN"
)

// killGrace is how long a program (or remote command) gets between
// SIGTERM and SIGKILL.
const killGrace = 3 * time.Second

// frameMax bounds the data of one socket frame.
const frameMax = 256 << 10

// Options configure RunWith.
type Options struct {
	// Stdin, Stdout and Stderr of the program; nil means /dev/null for
	// Stdin and this process's stdout and stderr for the others.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Dir is the program's working directory ("" for this process's).
	Dir string
	// Env adds variables to the program's environment.
	Env []string
	// Deadline bounds the whole run; zero means none. When it passes the
	// program's process group gets SIGTERM, then SIGKILL, and RunWith
	// fails with TimeoutError.
	Deadline time.Duration
}

// Run runs argv locally with its ssh served by target and returns the
// program's exit status (128+N when a signal N killed it). A deadline of
// zero means none.
func Run(ctx context.Context, r *core.Router, target *core.Context, argv []string, deadline time.Duration) (int, error) {
	return RunWith(ctx, r, target, argv, &Options{Deadline: deadline})
}

// RunWith is Run with options.
func RunWith(ctx context.Context, r *core.Router, target *core.Context, argv []string, opts *Options) (int, error) {
	if len(argv) == 0 {
		return -1, errors.New("fakessh.run: empty argv")
	}
	if opts == nil {
		opts = &Options{}
	}
	exe, err := os.Executable()
	if err != nil {
		return -1, fmt.Errorf("fakessh.run: finding this executable: %w", err)
	}
	dir, err := os.MkdirTemp("", "mitostar-fakessh-")
	if err != nil {
		return -1, fmt.Errorf("fakessh.run: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o700); err != nil {
		return -1, fmt.Errorf("fakessh.run: %w", err)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o700); err != nil {
		return -1, fmt.Errorf("fakessh.run: %w", err)
	}
	if err := os.Symlink(exe, filepath.Join(bin, "ssh")); err != nil {
		return -1, fmt.Errorf("fakessh.run: %w", err)
	}
	sock := filepath.Join(dir, "s-"+randomHex(8))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return -1, fmt.Errorf("fakessh.run: listening on %s: %w", sock, err)
	}
	srv := &server{r: r, target: target, token: randomHex(32), ln: ln, sessions: map[string]*session{}, done: make(chan struct{})}
	srv.wg.Add(1)
	go srv.accept()
	defer srv.close()

	path := bin
	if p := os.Getenv("PATH"); p != "" {
		path += string(os.PathListSeparator) + p
	}
	argv = withSSHProgram(argv, filepath.Join(bin, "ssh"))
	cmd := exec.Command(argv[0], argv[1:]...)
	if lp, err := lookpath.Find(argv[0], path); err == nil {
		cmd.Path = lp
	} else {
		return -1, fmt.Errorf("fakessh.run: %s: %w", argv[0], err)
	}
	cmd.Dir = opts.Dir
	cmd.Env = append(withoutVars(os.Environ(), "PATH", core.RoleEnv, envSocket, envToken),
		"PATH="+path, core.RoleEnv+"=fakessh", envSocket+"="+sock, envToken+"="+srv.token)
	cmd.Env = append(cmd.Env, opts.Env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("fakessh.run: starting %s: %w", argv[0], err)
	}
	pgid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var timeout <-chan time.Time
	if opts.Deadline > 0 {
		t := time.NewTimer(opts.Deadline)
		defer t.Stop()
		timeout = t.C
	}
	var runErr error
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-ctx.Done():
		runErr = fmt.Errorf("fakessh.run %s: %w", argv[0], context.Cause(ctx))
	case <-timeout:
		runErr = &core.TimeoutError{Op: fmt.Sprintf("fakessh.run %s (deadline %s)", argv[0], opts.Deadline)}
	case <-r.Lifetime().Done():
		runErr = &core.ChannelError{Reason: "the Router has shut down"}
	}
	if runErr != nil {
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case waitErr = <-exited:
		case <-time.After(killGrace):
			syscall.Kill(-pgid, syscall.SIGKILL)
			waitErr = <-exited
		}
	}
	// Whatever the program left behind in its process group (an ssh it
	// did not wait for) goes with it.
	syscall.Kill(-pgid, syscall.SIGKILL)
	srv.close()
	if runErr != nil {
		return -1, runErr
	}
	return exitStatus(cmd.ProcessState, waitErr)
}

// withSSHProgram makes scp and sftp use the fake ssh: they run
// /usr/bin/ssh, not the ssh on PATH, unless -S names a program.
func withSSHProgram(argv []string, ssh string) []string {
	switch filepath.Base(argv[0]) {
	case "scp", "sftp":
	default:
		return argv
	}
	for _, a := range argv[1:] {
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-S") {
			return argv
		}
	}
	return append([]string{argv[0], "-S", ssh}, argv[1:]...)
}

// exitStatus is the shell's view of how a process ended.
func exitStatus(ps *os.ProcessState, err error) (int, error) {
	if ps == nil {
		return -1, err
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ps.ExitCode(), nil
}

func withoutVars(env []string, names ...string) []string {
	out := env[:0:0]
outer:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Records and frames on the unix socket.

type hello struct {
	Token     string `cbor:"1,keyasint"`
	Session   string `cbor:"2,keyasint,omitempty"` // set on connection 2
	Command   string `cbor:"3,keyasint,omitempty"`
	Subsystem bool   `cbor:"4,keyasint,omitempty"`
}

type accept struct {
	Session string `cbor:"1,keyasint,omitempty"`
	Error   string `cbor:"2,keyasint,omitempty"`
}

func writeRecord(w io.Writer, v any) error {
	data, err := core.Marshal(v)
	if err != nil {
		return err
	}
	buf := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	_, err = w.Write(append(buf, data...))
	return err
}

func readRecord(r io.Reader, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > 1<<20 {
		return fmt.Errorf("record of %d bytes", size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return err
	}
	return core.Unmarshal(data, v)
}

// writeFrame writes one frame: type, u32 length, data.
func writeFrame(w io.Writer, typ byte, data []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(data)))
	bufs := net.Buffers{hdr[:], data}
	_, err := bufs.WriteTo(w)
	return err
}

func readFrameHeader(r io.Reader) (typ byte, n int, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, err
	}
	n = int(binary.BigEndian.Uint32(hdr[1:]))
	if n > frameMax {
		return 0, 0, fmt.Errorf("frame of %d bytes (max %d)", n, frameMax)
	}
	return hdr[0], n, nil
}

// server accepts the ssh processes of one Run.
type server struct {
	r      *core.Router
	target *core.Context
	token  string
	ln     *net.UnixListener

	mu       sync.Mutex
	sessions map[string]*session
	conns    map[net.Conn]struct{}
	closed   bool
	done     chan struct{}
	wg       sync.WaitGroup
}

func (s *server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
		}()
	}
}

// track records an open connection so that close can end it; false
// once the server is closed.
func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// close stops accepting, ends every session and waits for their
// goroutines. It is idempotent.
func (s *server) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
		s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// serve handles one connection from an ssh process.
func (s *server) serve(c *net.UnixConn) {
	defer s.untrack(c)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var h hello
	if err := readRecord(c, &h); err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	if subtle.ConstantTimeCompare([]byte(h.Token), []byte(s.token)) != 1 {
		writeRecord(c, &accept{Error: "bad token"})
		return
	}
	if h.Session != "" {
		s.mu.Lock()
		sess := s.sessions[h.Session]
		s.mu.Unlock()
		if sess == nil {
			return
		}
		select {
		case sess.stdin <- c:
			<-sess.finished // keep c tracked until the session is over
		case <-sess.finished:
		}
		return
	}
	sess := &session{srv: s, ctrl: c, id: randomHex(16), stdin: make(chan *net.UnixConn, 1), finished: make(chan struct{})}
	s.mu.Lock()
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, sess.id)
		s.mu.Unlock()
	}()
	sess.run(&h)
}
