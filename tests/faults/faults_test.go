package faults

import (
	"strings"
	"testing"
	"time"

	"github.com/mitostar/mitostar/internal/testbed"
)

// Partitions: a link whose packets stop, by its carrier going down or by
// a firewall dropping them, fails every call waiting behind it within
// the keepalive bound (keepalive_interval × keepalive_count + 2 s),
// whether sent before or after the cut, into the far context or into a
// child of it; the rest of the tree (a local child, a host on another
// link) keeps answering meanwhile; a connection attempt during the cut
// fails at its connect_timeout; once the link is back a new connection
// to the host works; and the far side, which lost its client, exits.
func TestPartition(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		for _, mode := range []testbed.CutMode{testbed.LinkDown, testbed.DropPackets} {
			t.Run(mode.String(), func(t *testing.T) {
				const pending = 3
				ka := quickKeepalive
				ft := newFarTree(t, tr, ka, pending)
				cutAt := time.Now()
				ft.farHost.Cut(t, mode)
				var rep faultReport
				ft.m.do(t, "fault", &rep, ka.bound()+time.Minute)
				slowest := checkCallsFailed(t, rep, 2*pending+2, cutAt, ka.bound())
				t.Logf("%s: %d calls through the cut link failed, the last %s after the cut (bound %s)", mode, len(rep.Calls), slowest.Round(time.Millisecond), ka.bound())
				checkRestAnswered(t, "during the cut", rep.liveness)

				var cr callReport
				ft.m.do(t, "connect 3", &cr, time.Minute)
				t.Logf("a connection during the cut: %s %q after %.1fs", cr.Kind, cr.Error, cr.Seconds)
				if cr.Kind != "StreamError" || cr.Seconds > 3+2 {
					t.Errorf("a connection during the cut with connect_timeout=3: %s %q after %.1fs, want a StreamError within 5s", cr.Kind, cr.Error, cr.Seconds)
				}

				ft.farHost.Restore(t)
				ft.checkReconnect(t)
				// The far side gave up too (its sshd's keepalives end the
				// session), and the context and its child exited on EOF.
				if testbed.ProcessesGone(t, 10*time.Second, ft.pids.Far, ft.pids.FarKid) {
					t.Logf("the old far context and its child were gone %s after the cut", time.Since(cutAt).Round(100*time.Millisecond))
				}
			})
		}
	})
}

// kill -9 of the far context fails every call waiting in it and in its
// child at once (the transport's stream ends), well before any
// keepalive could notice; the rest of the tree keeps answering, and a
// new connection to the host works.
func TestFarContextKilled(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		const pending = 3
		const bound = 2 * time.Second
		ft := newFarTree(t, tr, quickKeepalive, pending)
		killAt := time.Now()
		testbed.Kill(t, ft.pids.Far)
		var rep faultReport
		ft.m.do(t, "fault", &rep, time.Minute)
		slowest := checkCallsFailed(t, rep, 2*pending+2, killAt, bound)
		t.Logf("%d calls into the killed context and its child failed, the last %s after the kill (bound %s)", len(rep.Calls), slowest.Round(time.Millisecond), bound)
		checkRestAnswered(t, "after the kill", rep.liveness)
		ft.checkReconnect(t)
		testbed.ProcessesGone(t, 10*time.Second, ft.pids.FarKid)
	})
}

// A stopped far context (SIGSTOP) is not a dead link: the transport's
// keepalives are answered by the server, so the context is not declared
// gone however long it stays stopped; a call into it with a deadline
// fails at its deadline, the rest of the tree keeps answering, and once
// the context continues the same context answers again.
func TestStoppedFarContext(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ft := newFarTree(t, tr, quickKeepalive, 0)
		testbed.Stop(t, ft.pids.Far)
		var rep callReport
		ft.m.do(t, "timed 2", &rep, time.Minute)
		t.Logf("a call with a 2 s deadline into the stopped context: %s %q after %.2fs", rep.Kind, rep.Error, rep.Seconds)
		if rep.Kind != "TimeoutError" || rep.Seconds < 2 || rep.Seconds > 2.5 {
			t.Errorf("a call with a 2 s deadline into the stopped context: %s %q after %.2fs, want a TimeoutError at 2s", rep.Kind, rep.Error, rep.Seconds)
		}
		checkRestAnswered(t, "while the far context is stopped", rep.liveness)
		// Stay stopped past the keepalive bound: the link must survive.
		time.Sleep(quickKeepalive.bound())
		testbed.Continue(t, ft.pids.Far)
		ft.m.do(t, "call", &rep, time.Minute)
		if rep.Error != "" || rep.Pid != ft.pids.Far {
			t.Errorf("a call into the continued context: pid %d (want %d), %s %q", rep.Pid, ft.pids.Far, rep.Kind, rep.Error)
		}
	})
}

// A slow link is not a dead link: a call carrying 512 KiB through a link
// limited to 1 Mbit/s takes its seconds and succeeds, and the rest of
// the tree keeps answering at its usual speed. The keepalive bound must
// exceed the time the link needs to drain what is queued for it: a
// keepalive waits behind the data (with OpenSSH's 1 s × 2, this call
// fails after about 3.5 s, the link declared dead).
func TestSlowLink(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ft := newFarTree(t, tr, keepalive{interval: 5, count: 3}, 0)
		var fast, slow callReport
		ft.m.do(t, "bulk 524288", &fast, time.Minute)
		ft.farHost.Slow(t, "1mbit")
		ft.m.do(t, "bulk 524288", &slow, 2*time.Minute)
		ft.farHost.Unslow(t)
		t.Logf("a call carrying 512 KiB: %.2fs, through a link at 1 Mbit/s %.2fs", fast.Seconds, slow.Seconds)
		if fast.Error != "" || slow.Error != "" {
			t.Fatalf("a call carrying 512 KiB: %q; through the slow link: %s %q", fast.Error, slow.Kind, slow.Error)
		}
		// 4 Mbit at 1 Mbit/s: the limit did apply.
		if slow.Seconds < 3 {
			t.Errorf("512 KiB through a link at 1 Mbit/s took only %.2fs", slow.Seconds)
		}
		checkRestAnswered(t, "during the slow call", slow.liveness)
		var rep callReport
		ft.m.do(t, "call", &rep, time.Minute)
		if rep.Error != "" || rep.Pid != ft.pids.Far {
			t.Errorf("a call into the far context after the slow call: pid %d (want %d), %s %q", rep.Pid, ft.pids.Far, rep.Kind, strings.TrimSpace(rep.Error))
		}
	})
}
