package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// sshTarget is where the ssh rows connect: user@host:port plus the files
// that make a non-interactive, host-key-checked login possible.
type sshTarget struct {
	user, host string
	port       int
	key        string
	knownHosts string
}

// parseSSHTarget parses "[user@]host[:port]".
func parseSSHTarget(s string) (sshTarget, error) {
	var t sshTarget
	rest := s
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		t.user, rest = rest[:at], rest[at+1:]
		if t.user == "" {
			return t, fmt.Errorf("ssh target %q: empty user before @", s)
		}
	}
	t.host, t.port = rest, 22
	if i := strings.LastIndex(rest, ":"); i >= 0 {
		p, err := strconv.Atoi(rest[i+1:])
		if err != nil || p < 1 || p > 65535 {
			return t, fmt.Errorf("ssh target %q: bad port %q", s, rest[i+1:])
		}
		t.host, t.port = rest[:i], p
	}
	if t.host == "" {
		return t, fmt.Errorf("ssh target %q: empty host", s)
	}
	return t, nil
}

// options are the ssh options of every floor command: those mitostar's
// ssh connection passes (BatchMode, host key checking, the key, -T, and
// no compression, as bench.star asks with compression=False), and no
// cipher choice, so that both negotiate OpenSSH's default.
func (t sshTarget) options() []string {
	a := []string{"-o", "BatchMode=yes", "-o", "Compression=no", "-T", "-p", strconv.Itoa(t.port)}
	if t.knownHosts != "" {
		a = append(a, "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+t.knownHosts)
	}
	if t.key != "" {
		a = append(a, "-o", "IdentitiesOnly=yes", "-i", t.key)
	}
	return a
}

// dest is [user@]host.
func (t sshTarget) dest() string {
	if t.user != "" {
		return t.user + "@" + t.host
	}
	return t.host
}

// argv is the ssh command line that runs the remote command cmd.
func (t sshTarget) argv(cmd string) []string {
	a := append([]string{"ssh"}, t.options()...)
	return append(a, t.dest(), cmd)
}

// startSSH runs cmd on the target with pipes to ssh's stdin and stdout
// and waits for the line "ready" that cmd must print first.
func startSSH(ctx context.Context, t sshTarget, cmd string) (*child, *bufio.Reader, error) {
	argv := t.argv("echo ready; " + cmd)
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Stderr = os.Stderr
	in, err := c.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := c.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting ssh: %w", err)
	}
	ch := &child{cmd: c, in: in, out: out}
	br := bufio.NewReaderSize(out, bulkChunk)
	line, err := br.ReadString('\n')
	if err != nil || line != "ready\n" {
		ch.close()
		return nil, nil, fmt.Errorf("%s: expected \"ready\", got %q (%v)", strings.Join(argv, " "), line, err)
	}
	return ch, br, nil
}

// benchSSH times `ssh HOST true` (the floor of connect + first call),
// a 64-byte ping-pong through `ssh HOST cat` (of the call round trip over
// ssh) and c.bulkMiB MiB into `ssh HOST cat` (of a large argument).
func benchSSH(ctx context.Context, c *config, _ string, e *emitter) error {
	t := c.ssh
	if t.host == "" {
		return nil
	}
	samples := make([]time.Duration, 0, c.sshReps)
	for i := 0; i < c.sshReps; i++ {
		argv := t.argv("true")
		t0 := time.Now()
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
		}
		samples = append(samples, time.Since(t0))
	}
	if err := e.times("ssh_connect_first_call", "ms", samples); err != nil {
		return err
	}

	ch, br, err := startSSH(ctx, t, "exec cat")
	if err != nil {
		return err
	}
	ch.out = io.NopCloser(br)
	pingPong(ch, min(100, c.rttReps))
	rtts, err := pingPong(ch, min(c.rttReps, 2000))
	if cerr := ch.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := e.times("ssh_rtt", "us", rtts); err != nil {
		return err
	}

	// One session for all reps, as mitostar and Mitogen send their
	// arguments over one open connection: dd reads exactly one rep's
	// bytes and says done. The untimed first rep takes the ramp-up of a
	// fresh ssh channel (bench/README.md).
	size := int64(c.bulkMiB) << 20
	script := fmt.Sprintf("for i in $(seq 0 %d); do dd of=/dev/null bs=1M count=%d iflag=fullblock status=none || exit 1; echo done; done",
		c.bulkReps, c.bulkMiB)
	ch, br, err = startSSH(ctx, t, script)
	if err != nil {
		return err
	}
	defer ch.close()
	block := make([]byte, bulkChunk)
	for i := range block {
		block[i] = 'x'
	}
	bulk, err := ddReps(br, c.bulkReps, func() error { return writeN(ch.in, block, size) })
	if err != nil {
		return err
	}
	if err := ch.close(); err != nil {
		return err
	}
	return e.rates(fmt.Sprintf("ssh_bulk_%dm", c.bulkMiB), "MiB/s", float64(c.bulkMiB), bulk)
}

// ddReps times reps+1 sends into a remote dd loop that answers "done"
// after each one, and returns the times of all but the first (the
// untimed ramp-up of a fresh ssh channel).
func ddReps(br *bufio.Reader, reps int, send func() error) ([]time.Duration, error) {
	var samples []time.Duration
	for rep := 0; rep <= reps; rep++ {
		t0 := time.Now()
		err := send()
		var line string
		if err == nil {
			line, err = br.ReadString('\n')
		}
		d := time.Since(t0)
		if err == nil && line != "done\n" {
			err = fmt.Errorf("ssh dd: expected \"done\", got %q", line)
		}
		if err != nil {
			return nil, err
		}
		if rep > 0 {
			samples = append(samples, d)
		}
	}
	return samples, nil
}

// benchSSHFanout times c.children `ssh HOST true` run at once, each to an
// alias of the target of its own (as bench.star connects to n hosts):
// the floor of connecting to that many hosts in parallel.
func benchSSHFanout(ctx context.Context, c *config, _ string, e *emitter) error {
	t := c.ssh
	if t.host == "" {
		return nil
	}
	dir, err := os.MkdirTemp("", "floor-fanout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var conf strings.Builder
	for i := range c.children {
		fmt.Fprintf(&conf, "Host h%d\n  HostName %s\n  Port %d\n", i, t.host, t.port)
	}
	path := dir + "/ssh_config"
	if err := os.WriteFile(path, []byte(conf.String()), 0o644); err != nil {
		return err
	}
	errs := make(chan error, c.children)
	t0 := time.Now()
	for i := range c.children {
		go func() {
			argv := append(append([]string{"ssh", "-F", path}, t.options()...), fmt.Sprintf("h%d", i), "true")
			if t.user != "" {
				argv = append(argv[:len(argv)-2], "-l", t.user, argv[len(argv)-2], "true")
			}
			if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
				errs <- fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
				return
			}
			errs <- nil
		}()
	}
	for range c.children {
		if err := <-errs; err != nil {
			return err
		}
	}
	return e.times(fmt.Sprintf("ssh_fanout_%d_wall", c.children), "ms", []time.Duration{time.Since(t0)})
}
