package core

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Benchmarks of core beside the raw floors they are judged against,
// measured in the same run: a bare pipe ping-pong between two processes,
// a bare spawn of this binary, bare pipe bandwidth. Each mitostar
// benchmark also reports its ratio to its floor (x-floor, x-spawn,
// x-pipe).
//
//	go test -run '^$' -bench . -benchtime 2s ./core

func init() {
	// MITOSTAR_CHILD_CPUPROFILE=prefix makes every child of a benchmark
	// write a CPU profile to prefix.PID when it shuts down.
	if prefix := os.Getenv("MITOSTAR_CHILD_CPUPROFILE"); prefix != "" {
		RegisterChildHook(func(r *Router, _ []byte) error {
			f, err := os.Create(fmt.Sprintf("%s.%d", prefix, os.Getpid()))
			if err != nil {
				return err
			}
			pprof.StartCPUProfile(f)
			r.Go(func() {
				<-r.Lifetime().Done()
				pprof.StopCPUProfile()
				f.Close()
			})
			return nil
		})
	}
	RegisterRole("bench-exit", func() int { return 0 })
	RegisterRole("bench-pingpong", runPingPong)
	RegisterRole("bench-source", runSource)
	RegisterFunc("bench.nop", func(ctx context.Context, c *Call) (any, error) { return nil, nil })
	// bench.stream(handle, total, chunk) sends total bytes to the
	// master's handle in chunks, then closes the channel.
	RegisterFunc("bench.stream", func(ctx context.Context, c *Call) (any, error) {
		var args []int
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		s := NewSender(c.Router.ContextByID(0), uint32(args[0]))
		chunk := make([]byte, args[2])
		for sent := 0; sent < args[1]; sent += len(chunk) {
			data, _ := Marshal(chunk)
			if err := s.ctx.Send(ctx, &Message{Handle: s.handle, Data: data}); err != nil {
				return nil, err
			}
		}
		return nil, s.Close()
	})
}

// pingPongSize is the size of the floor's ping: an empty call's request.
const pingPongSize = 64

// runPingPong echoes fixed-size pings from stdin to stdout until EOF.
func runPingPong() int {
	buf := make([]byte, pingPongSize)
	for {
		if _, err := io.ReadFull(os.Stdin, buf); err != nil {
			return 0
		}
		if _, err := os.Stdout.Write(buf); err != nil {
			return 1
		}
	}
}

// runSource writes $BENCH_BYTES bytes to stdout in 256 KiB writes.
func runSource() int {
	n, _ := strconv.Atoi(os.Getenv("BENCH_BYTES"))
	buf := make([]byte, 256<<10)
	for n > 0 {
		w := min(n, len(buf))
		if _, err := os.Stdout.Write(buf[:w]); err != nil {
			return 1
		}
		n -= w
	}
	return 0
}

func roleCmd(b testing.TB, role string, env ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), RoleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	return cmd
}

// A pinger is a process echoing fixed-size pings: the floor of a round trip.
type pinger struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out io.Reader
	buf []byte
}

func startPinger(b testing.TB) *pinger {
	cmd := roleCmd(b, "bench-pingpong")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &pinger{cmd: cmd, in: in, out: out, buf: make([]byte, pingPongSize)}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	p.ping(b) // warm up
	return p
}

// ping makes one round trip and returns its duration.
func (p *pinger) ping(b testing.TB) time.Duration {
	start := time.Now()
	p.in.Write(p.buf)
	if _, err := io.ReadFull(p.out, p.buf); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// spawn is the floor of a child start: fork, exec and exit of this binary.
func spawn(b testing.TB) time.Duration {
	start := time.Now()
	if err := roleCmd(b, "bench-exit").Run(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// pipeBandwidth is the floor of bulk transfer: the time to read n bytes
// from a child writing them to a pipe.
func pipeBandwidth(b testing.TB, n int) time.Duration {
	cmd := roleCmd(b, "bench-source", "BENCH_BYTES="+strconv.Itoa(n))
	out, _ := cmd.StdoutPipe()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	got, _ := io.CopyBuffer(io.Discard, out, make([]byte, 256<<10))
	d := time.Since(start)
	cmd.Wait()
	if got != int64(n) {
		b.Fatalf("read %d bytes, want %d", got, n)
	}
	return d
}

// The floors and the benchmarks judged against them run interleaved,
// one floor operation beside each measured one, so that load from
// elsewhere on the machine weighs on both alike. ns/op is their sum; the
// metrics give each side and the ratio.

func BenchmarkFloorPingPong(b *testing.B) {
	p := startPinger(b)
	for b.Loop() {
		p.ping(b)
	}
}

func BenchmarkFloorSpawn(b *testing.B) {
	for b.Loop() {
		spawn(b)
	}
}

func BenchmarkFloorPipeBandwidth(b *testing.B) {
	b.SetBytes(64 << 20)
	for b.Loop() {
		pipeBandwidth(b, 64<<20)
	}
}

func benchMaster(b *testing.B) (*Router, context.Context) {
	r := NewMaster(Options{})
	b.Cleanup(r.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	b.Cleanup(cancel)
	return r, ctx
}

func benchConnect(b *testing.B, r *Router, via *Context) *Context {
	c, err := r.Connect(context.Background(), "local", &ConnectOptions{Via: via})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Call(context.Background(), nil, "bench.nop"); err != nil {
		b.Fatal(err)
	}
	return c
}

// report adds the measured side, its floor and their ratio.
func report(b *testing.B, spent, floor time.Duration, unit, ratio string) {
	n := float64(b.N)
	b.ReportMetric(float64(spent.Nanoseconds())/n, unit)
	b.ReportMetric(float64(floor.Nanoseconds())/n, "floor-"+unit)
	b.ReportMetric(float64(spent)/float64(floor), ratio)
}

func benchRoundTrip(b *testing.B, c *Context, ctx context.Context) {
	p := startPinger(b)
	var spent, floor time.Duration
	for b.Loop() {
		floor += p.ping(b)
		start := time.Now()
		if err := c.Call(ctx, nil, "bench.nop"); err != nil {
			b.Fatal(err)
		}
		spent += time.Since(start)
	}
	report(b, spent, floor, "ns/call", "x-floor")
}

func BenchmarkRoundTrip(b *testing.B) {
	r, ctx := benchMaster(b)
	benchRoundTrip(b, benchConnect(b, r, nil), ctx)
}

func BenchmarkRoundTrip2Hop(b *testing.B) {
	r, ctx := benchMaster(b)
	benchRoundTrip(b, benchConnect(b, r, benchConnect(b, r, nil)), ctx)
}

// BenchmarkInFlight1000 keeps 1,000 calls in flight to one child.
func BenchmarkInFlight1000(b *testing.B) {
	r, ctx := benchMaster(b)
	c := benchConnect(b, r, nil)
	const inFlight = 1000
	req := &CallRequest{Func: "bench.nop", Args: []byte{0x80}}
	rvs := make([]*Receiver, inFlight)
	for b.Loop() {
		for i := range rvs {
			rv, err := c.CallAsync(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			rvs[i] = rv
		}
		for _, rv := range rvs {
			m, err := rv.Get(ctx, true)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := DecodeCallReply(m); err != nil {
				b.Fatal(err)
			}
			rv.Close()
		}
	}
	b.ReportMetric(float64(inFlight*b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkStream64MiB streams 64 MiB from a child to the master in
// 256 KiB messages.
func BenchmarkStream64MiB(b *testing.B) {
	r, ctx := benchMaster(b)
	c := benchConnect(b, r, nil)
	const total, chunk = 64 << 20, 256 << 10
	var spent, floor time.Duration
	for b.Loop() {
		floor += pipeBandwidth(b, total)
		start := time.Now()
		rv, _ := r.NewReceiver(ReceiverOptions{Respondent: c})
		done := make(chan error, 1)
		go func() { done <- c.Call(ctx, nil, "bench.stream", rv.Handle(), total, chunk) }()
		got := 0
		for {
			m, err := rv.Get(ctx, true)
			if err != nil {
				if m != nil && m.IsDead() {
					break
				}
				b.Fatal(err)
			}
			got += len(m.Data)
		}
		rv.Close()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		spent += time.Since(start)
		if got < total {
			b.Fatalf("received %d bytes", got)
		}
	}
	mib := float64(total*b.N) / (1 << 20)
	b.ReportMetric(mib/spent.Seconds(), "MiB/s")
	b.ReportMetric(mib/floor.Seconds(), "pipe-MiB/s")
	b.ReportMetric(floor.Seconds()/spent.Seconds(), "x-pipe")
}

// BenchmarkChildStart measures a child's start up to its first reply.
func BenchmarkChildStart(b *testing.B) {
	r, ctx := benchMaster(b)
	var spent, floor time.Duration
	for b.Loop() {
		floor += spawn(b)
		start := time.Now()
		c, err := r.Connect(ctx, "local", nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Call(ctx, nil, "bench.nop"); err != nil {
			b.Fatal(err)
		}
		spent += time.Since(start)
		r.Disconnect(c)
		<-c.Disconnected()
	}
	report(b, spent, floor, "ns/start", "x-spawn")
}

// BenchmarkIdleChildRSS reports the resident memory of an idle child.
func BenchmarkIdleChildRSS(b *testing.B) {
	r, ctx := benchMaster(b)
	var rss float64
	for b.Loop() {
		c := benchConnect(b, r, nil)
		var pid int
		if err := c.Call(ctx, &pid, "test.pid"); err != nil {
			b.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		kib, err := vmRSS(pid)
		if err != nil {
			b.Fatal(err)
		}
		rss = max(rss, float64(kib)/1024)
		r.Disconnect(c)
		<-c.Disconnected()
	}
	b.ReportMetric(rss, "RSS-MiB")
}

// vmRSS reads VmRSS of pid in KiB.
func vmRSS(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
