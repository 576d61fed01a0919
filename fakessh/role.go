package fakessh

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/mitostar/mitostar/core"
)

func init() { core.RegisterRole("fakessh", runRole) }

// runRole is mitostar started as `ssh` by a program under Run.
func runRole() int {
	die := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "ssh: "+format+"\n", args...)
		return 255
	}
	req, err := parseSSH(os.Args[1:])
	if err != nil {
		return die("%v", err)
	}
	if req.Version {
		fmt.Fprintf(os.Stderr, "OpenSSH_9.0 (mitostar fakessh %s)\n", core.BuildVersion)
		return 0
	}
	sock, token := os.Getenv(envSocket), os.Getenv(envToken)
	if sock == "" || token == "" {
		return die("fakessh: %s and %s must be set (run programs with fakessh.run)", envSocket, envToken)
	}
	dial := func() (*net.UnixConn, error) {
		return net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	}
	ctrl, err := dial()
	if err != nil {
		return die("fakessh: connecting to mitostar: %v", err)
	}
	if err := writeRecord(ctrl, &hello{Token: token, Command: req.Command, Subsystem: req.Subsystem}); err != nil {
		return die("fakessh: %v", err)
	}
	var acc accept
	if err := readRecord(ctrl, &acc); err != nil {
		return die("fakessh: no answer from mitostar: %v", err)
	}
	if acc.Error != "" {
		return die("fakessh: %s", acc.Error)
	}
	in, err := dial()
	if err != nil {
		return die("fakessh: connecting to mitostar: %v", err)
	}
	if err := writeRecord(in, &hello{Token: token, Session: acc.Session}); err != nil {
		return die("fakessh: %v", err)
	}
	go func() {
		io.CopyBuffer(in, os.Stdin, make([]byte, frameMax))
		in.CloseWrite()
	}()

	// Signals go to the remote command; like ssh, a terminating signal
	// also ends this process (the command then gets SIGHUP).
	var wmu sync.Mutex
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for sig := range sigc {
			n := sig.(syscall.Signal)
			wmu.Lock()
			writeFrame(ctrl, 's', []byte{byte(n)})
			wmu.Unlock()
			if n != syscall.SIGUSR1 && n != syscall.SIGUSR2 {
				time.Sleep(50 * time.Millisecond) // let the signal reach the command first
				fmt.Fprintf(os.Stderr, "Killed by signal %d.\n", int(n))
				os.Exit(255)
			}
		}
	}()

	br := bufio.NewReaderSize(ctrl, frameMax+16)
	stdout := os.Stdout
	for {
		typ, n, err := readFrameHeader(br)
		if err != nil {
			return die("fakessh: connection to mitostar lost: %v", err)
		}
		switch typ {
		case 'o':
			if _, err := io.CopyN(stdout, br, int64(n)); err != nil {
				return die("fakessh: writing stdout: %v", err)
			}
		case 'e':
			if _, err := io.CopyN(os.Stderr, br, int64(n)); err != nil {
				io.CopyN(io.Discard, br, int64(n))
			}
		case 'x':
			var st [4]byte
			if n != 4 {
				return die("fakessh: bad exit frame")
			}
			if _, err := io.ReadFull(br, st[:]); err != nil {
				return die("fakessh: %v", err)
			}
			return int(binary.BigEndian.Uint32(st[:]))
		default:
			return die("fakessh: unknown frame %q", typ)
		}
	}
}
