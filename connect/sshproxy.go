package connect

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proxyCommand runs the configured ProxyCommand, as ssh does (`sh -c
// "exec COMMAND"` with %h, %p, %r, %n and %% expanded), and returns a
// connection over its stdin and stdout. Its stderr goes to logf.
func proxyCommand(ctx context.Context, c *sshConfig, logf func(string, ...any)) (net.Conn, error) {
	command := c.expandTokens(c.proxyCommand)
	cmd := exec.Command("sh", "-c", "exec "+command)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ProxyCommand %q: %w", command, err)
	}
	p := &proxyConn{cmd: cmd, r: stdout, w: stdin, done: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := stderr.Read(buf)
			if n > 0 {
				text := strings.TrimSpace(string(buf[:n]))
				logf("ProxyCommand: %s", text)
				p.mu.Lock()
				p.said = append(p.said, text)
				if len(p.said) > noiseLines {
					p.said = p.said[1:]
				}
				p.mu.Unlock()
			}
			if err != nil {
				break
			}
		}
		cmd.Wait()
		close(p.done)
	}()
	if ctx.Err() != nil {
		p.Close()
		return nil, ctx.Err()
	}
	return p, nil
}

// proxyConn is a ProxyCommand's stdin and stdout as a net.Conn. Closing
// it closes both and kills the command's process group if it has not
// exited a moment later.
type proxyConn struct {
	cmd       *exec.Cmd
	r         io.ReadCloser
	w         io.WriteCloser
	done      chan struct{}
	closeOnce sync.Once

	mu   sync.Mutex
	said []string // the command's last words on stderr
}

// stderr is what the command said on stderr, once it has exited (or a
// moment after it was closed).
func (p *proxyConn) stderr() string {
	select {
	case <-p.done:
	case <-time.After(diagGrace):
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.said, "\n")
}

func (p *proxyConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *proxyConn) Write(b []byte) (int, error) { return p.w.Write(b) }

func (p *proxyConn) Close() error {
	p.closeOnce.Do(func() {
		p.w.Close()
		p.r.Close()
		go func() {
			select {
			case <-p.done:
			case <-time.After(killGrace):
				syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			}
		}()
	})
	return nil
}

func (p *proxyConn) LocalAddr() net.Addr                { return proxyAddr{} }
func (p *proxyConn) RemoteAddr() net.Addr               { return proxyAddr{} }
func (p *proxyConn) SetDeadline(t time.Time) error      { return nil }
func (p *proxyConn) SetReadDeadline(t time.Time) error  { return nil }
func (p *proxyConn) SetWriteDeadline(t time.Time) error { return nil }

// proxyAddr is the address of a connection through a ProxyCommand.
type proxyAddr struct{}

func (proxyAddr) Network() string { return "proxycommand" }
func (proxyAddr) String() string  { return "proxycommand:0" }
