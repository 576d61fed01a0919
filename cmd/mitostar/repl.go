package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mitostar/mitostar/repl"
	"github.com/mitostar/mitostar/runtime"
)

// runREPL is mitostar repl: statements typed at the prompt run in the
// master until the input ends (Ctrl-D), then the tree shuts down. SIGINT
// (Ctrl-C) stops the running statement, not the session; SIGTERM and
// SIGHUP end the session.
func runREPL(ed *repl.REPL, rt *runtime.Runtime, wait time.Duration, stderr io.Writer) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	interrupts := make(chan os.Signal, 1)
	signal.Notify(interrupts, syscall.SIGINT)
	defer signal.Stop(interrupts)
	ends := make(chan os.Signal, 1)
	signal.Notify(ends, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(ends)
	ended := make(chan os.Signal, 1)
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() { // ends with the session
		defer close(watched)
		select {
		case sig := <-ends:
			ended <- sig
			cancel(fmt.Errorf("interrupted by %s", sig))
			ed.Close() // a prompt waiting for input returns
		case <-done:
		}
	}()
	err := ed.Run(ctx, rt, interrupts)
	close(done)
	<-watched
	rt.Close(wait)
	select {
	case sig := <-ended:
		if sig == syscall.SIGHUP {
			return 129
		}
		return 143
	default:
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "mitostar repl: %v\n", err)
		return 1
	}
	return 0
}
