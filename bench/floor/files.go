package main

// The floors of the file-transfer rows: fs.put and rsync through fakessh,
// to a local child and over ssh. bench/README.md says why each floor is
// the raw mechanism of its row.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dataPaths makes the source data with bench/mkdata.sh (run from the
// repository root, as bench/run.sh does) and returns the source file of
// the fs_put rows and the source tree of the fakessh_rsync rows.
func dataPaths(ctx context.Context, c *config) (file, tree string, err error) {
	if _, err := os.Stat("bench/mkdata.sh"); err != nil {
		wd, _ := os.Getwd()
		return "", "", fmt.Errorf("bench/mkdata.sh not found in %s: run from the repository root", wd)
	}
	dir, err := filepath.Abs(c.dataDir)
	if err != nil {
		return "", "", err
	}
	mk := exec.CommandContext(ctx, "sh", "bench/mkdata.sh", dir, strconv.Itoa(c.putMiB),
		strconv.Itoa(c.treeFiles), strconv.Itoa(c.treeBigMiB))
	if out, err := mk.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("bench/mkdata.sh: %w: %s", err, out)
	}
	return filepath.Join(dir, fmt.Sprintf("file-%dm", c.putMiB)),
		filepath.Join(dir, fmt.Sprintf("tree-%d-%dm", c.treeFiles, c.treeBigMiB)), nil
}

// scratchDir makes a fresh local directory for the copies.
func scratchDir(tag string) (string, error) {
	d := fmt.Sprintf("/tmp/mitostar-bench-floor-%d-%s", os.Getpid(), tag)
	if err := os.RemoveAll(d); err != nil {
		return "", err
	}
	return d, os.MkdirAll(d, 0o755)
}

// copyBuf is the read and write size of the file copies: big, as a tuned
// cat would use.
const copyBuf = 1 << 20

// copyFile copies src to dst with copyBuf-sized read(2) and write(2): no
// splice or sendfile, so that the bytes pass through user space as they
// do in every framework.
func copyFile(dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, copyBuf)
	var n int64
	for {
		m, err := src.Read(buf)
		if m > 0 {
			if _, werr := dst.Write(buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// checkSize fails unless path holds want bytes.
func checkSize(path string, want int64) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Size() != want {
		return fmt.Errorf("%s has %d bytes, want %d", path, st.Size(), want)
	}
	return nil
}

// benchPutLocal: the file copied file → pipe → another process → file,
// the floor of fs.put to a local child (`cat src | (cat > dst)` in Go).
// As on the other sides, one untimed rep comes first.
func benchPutLocal(ctx context.Context, c *config, self string, e *emitter) error {
	src, _, err := dataPaths(ctx, c)
	if err != nil {
		return err
	}
	root, err := scratchDir("put")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	dst := filepath.Join(root, "put")
	size := int64(c.putMiB) << 20
	var samples []time.Duration
	for rep := 0; rep <= c.putReps; rep++ {
		os.Remove(dst)
		ch, err := startChild(ctx, self, "floor-sink", dst)
		if err != nil {
			return err
		}
		one := make([]byte, 1)
		if _, err := io.ReadFull(ch.out, one); err != nil {
			ch.close()
			return fmt.Errorf("floor-sink did not start: %w", err)
		}
		t0 := time.Now()
		f, err := os.Open(src)
		if err == nil {
			_, err = copyFile(ch.in, f)
			f.Close()
		}
		ch.in.Close()
		if err == nil {
			_, err = io.ReadFull(ch.out, one) // the sink closed dst
		}
		d := time.Since(t0)
		if cerr := ch.close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = checkSize(dst, size)
		}
		if err != nil {
			return err
		}
		if rep > 0 {
			samples = append(samples, d)
		}
	}
	return e.rates(fmt.Sprintf("fs_put_local_%dm", c.putMiB), "MiB/s", float64(c.putMiB), samples)
}

// benchRsyncLocal: rsync -a of the tree with a trivial remote shell (this
// executable in role floor-rsh, which runs the command with sh -c as sshd
// would), the floor of rsync through fakessh into a local child.
func benchRsyncLocal(ctx context.Context, c *config, self string, e *emitter) error {
	_, tree, err := dataPaths(ctx, c)
	if err != nil {
		return err
	}
	return rsyncRows(ctx, c, e, "fakessh_rsync_local", tree, self+" floor-rsh", "h:")
}

// rsyncRows times rsync -a -e RSH of tree into fresh directories at
// dest (a "host:" prefix), one untimed rep first.
func rsyncRows(ctx context.Context, c *config, e *emitter, metric, tree, rsh, dest string) error {
	root, err := scratchDir(metric)
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	big := int64(c.treeBigMiB) << 20
	var samples []time.Duration
	for rep := 0; rep <= c.rsyncReps; rep++ {
		dst := filepath.Join(root, "rsync"+strconv.Itoa(rep))
		cmd := exec.CommandContext(ctx, "rsync", "-a", "-e", rsh, tree+"/", dest+dst+"/")
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(t0)
		if err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, out)
		}
		if err := checkSize(filepath.Join(dst, "big.bin"), big); err != nil {
			return err
		}
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
		if rep > 0 {
			samples = append(samples, d)
		}
	}
	return e.times(metric, "ms", samples)
}

// benchPutSSH: the file written into `ssh HOST 'cat > dst'`, the floor of
// fs.put over ssh. One session serves all reps (dd reads exactly one
// file's bytes per rep), so that, like fs.put on an open context, no rep
// pays for the connection; the untimed first rep takes the ramp-up of a
// fresh ssh channel (about a second on loopback, see bench/README.md).
func benchPutSSH(ctx context.Context, c *config, _ string, e *emitter) error {
	if c.ssh.host == "" {
		return nil
	}
	src, _, err := dataPaths(ctx, c)
	if err != nil {
		return err
	}
	root := fmt.Sprintf("/tmp/mitostar-bench-floor-%d-putssh", os.Getpid())
	dst := root + "/put"
	script := fmt.Sprintf("rm -rf %s && mkdir -p %s || exit 1; for i in $(seq 0 %d); do rm -f %s; "+
		"dd of=%s bs=1M count=%d iflag=fullblock status=none || exit 1; "+
		"[ $(wc -c < %s) -eq %d ] && echo done || { echo short; exit 1; }; done; rm -rf %s",
		root, root, c.putReps, dst, dst, c.putMiB, dst, int64(c.putMiB)<<20, root)
	ch, br, err := startSSH(ctx, c.ssh, script)
	if err != nil {
		return err
	}
	defer ch.close()
	samples, err := ddReps(br, c.putReps, func() error {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = copyFile(ch.in, f)
		return err
	})
	if err != nil {
		return err
	}
	if err := ch.close(); err != nil {
		return err
	}
	return e.rates(fmt.Sprintf("fs_put_ssh_%dm", c.putMiB), "MiB/s", float64(c.putMiB), samples)
}

// benchRsyncSSH: rsync -a -e ssh of the tree to the target, through an
// ssh connection opened beforehand (ControlMaster), the floor of rsync
// through fakessh into a context over ssh: both reuse an open
// connection, neither pays for ssh's handshake per run.
func benchRsyncSSH(ctx context.Context, c *config, _ string, e *emitter) error {
	if c.ssh.host == "" {
		return nil
	}
	_, tree, err := dataPaths(ctx, c)
	if err != nil {
		return err
	}
	cpDir, err := os.MkdirTemp("", "mitostar-bench-cm.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cpDir)
	cp := filepath.Join(cpDir, "cm")
	t := c.ssh
	opts := t.options()
	master := exec.CommandContext(ctx, "ssh", append(append([]string{"-M", "-S", cp, "-N"}, opts...), t.dest())...)
	master.Stderr = os.Stderr
	master.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := master.Start(); err != nil {
		return fmt.Errorf("starting the ssh control master: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- master.Wait() }()
	defer func() {
		master.Process.Kill()
		<-exited
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		check := exec.CommandContext(ctx, "ssh", "-S", cp, "-O", "check", t.dest())
		if check.Run() == nil {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("the ssh control master exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the ssh control master at %s was not ready within 30s", cp)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rsh := strings.Join(append([]string{"ssh", "-S", cp}, opts...), " ")
	return rsyncRows(ctx, c, e, "fakessh_rsync_ssh", tree, rsh, t.dest()+":")
}

// ---- child roles ----

// roleSink says it is ready with one byte, copies stdin into the file
// args[0] until EOF, closes it and says so with one more byte.
func roleSink(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: floor-sink FILE")
	}
	if _, err := stdout.Write([]byte{'.'}); err != nil {
		return err
	}
	f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := copyFile(f, stdin); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = stdout.Write([]byte{'k'})
	return err
}

// roleRsh is rsync's remote shell: `floor-rsh HOST COMMAND...` runs
// COMMAND with sh -c here, as sshd runs a remote command, with nothing
// in between (the process becomes sh).
func roleRsh(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: floor-rsh HOST COMMAND...")
	}
	return syscall.Exec("/bin/sh", []string{"sh", "-c", strings.Join(args[1:], " ")}, os.Environ())
}
