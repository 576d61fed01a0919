// Command floor measures the raw mechanisms mitostar is built on, with no
// framework in between: starting a process, a pipe round trip between two
// processes, pipelined pipe messages, a relay hop, many idle children,
// bulk pipe throughput, file copies through a pipe, rsync with a trivial
// remote shell and, given a target, plain ssh. Each figure is the
// physical floor of one row of the side-by-side benchmark (bench/run.sh);
// bench/README.md maps rows to floors.
//
// It prints one JSON object per line:
//
//	{"metric":"call_rtt","value":31.2,"unit":"us","n":2000,"median":31.2,"p99":80.5}
//
// The same executable is its own child: started with a role word as its
// first argument (floor-exit, floor-echo, floor-relay, floor-idle,
// floor-bulk, floor-sink, floor-rsh) it plays that part instead.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// msgSize is the size of one ping-pong message: about the size of the
// frame of a no-op call and of its reply.
const msgSize = 64

// bulkChunk is the write size of the bulk transfers.
const bulkChunk = 1 << 20

func main() {
	if len(os.Args) > 1 && os.Args[1] == "floor-rsh" {
		// rsync's remote shell: it becomes sh at once, with stdio as
		// rsync made it (no pollStdio).
		if err := roleRsh(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "floor floor-rsh: %v\n", err)
			os.Exit(1)
		}
	}
	if len(os.Args) > 1 {
		if role, ok := roles[os.Args[1]]; ok {
			if os.Getenv("GOMAXPROCS") == "" {
				// The raw mechanism at its best: one P, no idle P to wake.
				goruntime.GOMAXPROCS(1)
			}
			pollStdio()
			if err := role(os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "floor %s: %v\n", os.Args[1], err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "floor: %v\n", err)
		os.Exit(1)
	}
}

// config holds the command line.
type config struct {
	spawnReps   int
	spawnBinary string
	spawnArgs   []string
	rttReps     int
	twoHopReps  int
	pipelined   []int
	pipeReps    int
	children    int
	childReps   int
	bulkMiB     int
	bulkReps    int
	putMiB      int
	putReps     int
	treeFiles   int
	treeBigMiB  int
	rsyncReps   int
	dataDir     string
	ssh         sshTarget
	sshReps     int
	deadline    time.Duration
	only        map[string]bool
	childCPU    string // -child-cpu: the round-trip workload's echo child runs under taskset -c
}

func parseConfig(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	fs.IntVar(&c.spawnReps, "first-call-reps", 20, "process starts (fork+exec+exit) to time")
	fs.StringVar(&c.spawnBinary, "spawn-binary", "", "static binary to start (default: this one, in role floor-exit)")
	spawnArgs := fs.String("spawn-args", "", "space-separated arguments for -spawn-binary")
	fs.IntVar(&c.rttReps, "rtt", 5000, "pipe round trips to time")
	fs.IntVar(&c.twoHopReps, "two-hop", 2000, "round trips through a relay to time")
	pipelined := fs.String("pipelined", "1000,10000", "comma-separated batch sizes of pipelined messages")
	fs.IntVar(&c.pipeReps, "pipelined-reps", 20, "repetitions of each pipelined batch")
	fs.IntVar(&c.children, "children", 100, "idle children started at once")
	fs.IntVar(&c.childReps, "children-reps", 2, "repetitions of the children workload")
	fs.IntVar(&c.bulkMiB, "bulk-mib", 64, "MiB per bulk transfer")
	fs.IntVar(&c.bulkReps, "bulk-reps", 5, "bulk transfers in each direction")
	fs.IntVar(&c.putMiB, "put-mib", 256, "MiB of the file the fs_put rows copy")
	fs.IntVar(&c.putReps, "put-reps", 3, "timed file copies (after one untimed)")
	fs.IntVar(&c.treeFiles, "tree-files", 500, "small files in the tree the fakessh_rsync rows copy")
	fs.IntVar(&c.treeBigMiB, "tree-big-mib", 64, "MiB of the one big file in that tree")
	fs.IntVar(&c.rsyncReps, "rsync-reps", 3, "timed rsync runs (after one untimed)")
	fs.StringVar(&c.dataDir, "data-dir", "bench/out/data", "where bench/mkdata.sh keeps the source data")
	ssh := fs.String("ssh", "", "ssh target user@host:port (no ssh rows when empty)")
	fs.StringVar(&c.ssh.key, "ssh-key", "", "identity file for -ssh")
	fs.StringVar(&c.ssh.knownHosts, "ssh-known-hosts", "", "known_hosts file for -ssh")
	fs.IntVar(&c.sshReps, "ssh-reps", 5, "ssh connections to time")
	fs.DurationVar(&c.deadline, "timeout", 10*time.Minute, "give up after this long")
	only := fs.String("only", "", "comma-separated metric prefixes to run (default: all)")
	fs.StringVar(&c.childCPU, "child-cpu", "", "run the call_rtt echo child on this CPU (taskset -c), apart from the caller")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"first-call-reps", c.spawnReps}, {"rtt", c.rttReps}, {"two-hop", c.twoHopReps}, {"pipelined-reps", c.pipeReps}, {"children", c.children},
		{"children-reps", c.childReps}, {"bulk-mib", c.bulkMiB}, {"bulk-reps", c.bulkReps}, {"ssh-reps", c.sshReps},
		{"put-mib", c.putMiB}, {"put-reps", c.putReps}, {"tree-files", c.treeFiles}, {"tree-big-mib", c.treeBigMiB},
		{"rsync-reps", c.rsyncReps}} {
		if f.v < 1 {
			return nil, fmt.Errorf("-%s must be at least 1, got %d", f.name, f.v)
		}
	}
	if *spawnArgs != "" {
		c.spawnArgs = strings.Fields(*spawnArgs)
	}
	for _, s := range strings.Split(*pipelined, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-pipelined: %q is not a positive count", s)
		}
		c.pipelined = append(c.pipelined, n)
	}
	if *ssh != "" {
		t, err := parseSSHTarget(*ssh)
		if err != nil {
			return nil, err
		}
		c.ssh.user, c.ssh.host, c.ssh.port = t.user, t.host, t.port
	}
	if *only != "" {
		c.only = map[string]bool{}
		for _, p := range strings.Split(*only, ",") {
			c.only[strings.TrimSpace(p)] = true
		}
	}
	return c, nil
}

// wants reports whether the metric family name was selected by -only.
func (c *config) wants(name string) bool {
	if c.only == nil {
		return true
	}
	for p := range c.only {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func run(args []string, out io.Writer) error {
	c, err := parseConfig(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.deadline)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this executable: %w", err)
	}
	e := &emitter{w: out}
	steps := []struct {
		name string
		fn   func(context.Context, *config, string, *emitter) error
	}{
		{"local_first_call", benchSpawn},
		{"call_rtt", benchRTT},
		{"pipelined", benchPipelined},
		{"two_hop_rtt", benchTwoHop},
		{"children", benchChildren},
		{"rss", benchRSS},
		{"bulk", benchBulk},
		{"fs_put_local", benchPutLocal},
		{"fakessh_rsync_local", benchRsyncLocal},
		{"ssh", benchSSH},
		{"ssh_fanout", benchSSHFanout},
		{"fs_put_ssh", benchPutSSH},
		{"fakessh_rsync_ssh", benchRsyncSSH},
	}
	for _, s := range steps {
		if !c.wants(s.name) {
			continue
		}
		if err := s.fn(ctx, c, self, e); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// emitter writes one JSON line per metric.
type emitter struct{ w io.Writer }

// result is one line of output, the format shared by the three sides of
// the benchmark.
type result struct {
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	N      int     `json:"n"`
	Median float64 `json:"median"`
	P99    float64 `json:"p99"`
}

// times reports durations in unit ("ms" or "us"); p99 is the slow tail.
func (e *emitter) times(metric, unit string, samples []time.Duration) error {
	scale := map[string]float64{"ms": 1e6, "us": 1e3, "s": 1e9}[unit]
	if scale == 0 {
		return fmt.Errorf("unknown time unit %q", unit)
	}
	v := make([]float64, len(samples))
	for i, d := range samples {
		v[i] = float64(d.Nanoseconds()) / scale
	}
	med, p99 := percentiles(v, false)
	return e.emit(result{metric, med, unit, len(v), med, p99})
}

// rates reports work/second figures, one per sample: work units done in
// each duration. p99 is the slow tail, that is the 1st percentile rate.
func (e *emitter) rates(metric, unit string, work float64, samples []time.Duration) error {
	v := make([]float64, len(samples))
	for i, d := range samples {
		v[i] = work / d.Seconds()
	}
	med, p99 := percentiles(v, true)
	return e.emit(result{metric, med, unit, len(v), med, p99})
}

// values reports plain quantities (sizes).
func (e *emitter) values(metric, unit string, v []float64) error {
	med, p99 := percentiles(v, false)
	return e.emit(result{metric, med, unit, len(v), med, p99})
}

func (e *emitter) emit(r result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err = fmt.Fprintf(e.w, "%s\n", b); err != nil {
		return err
	}
	if name, ok := nativeName(r.Metric); ok {
		r.Metric = name
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.w, "%s\n", b)
		return err
	}
	return nil
}

// nativeName is the name of the row of mitostar's native ssh transport
// that has the same floor as the OpenSSH row metric.
func nativeName(metric string) (string, bool) {
	for _, p := range []string{"ssh_connect_", "ssh_rtt", "ssh_bulk_", "ssh_fanout_"} {
		if strings.HasPrefix(metric, p) {
			return "ssh_native_" + strings.TrimPrefix(metric, "ssh_"), true
		}
	}
	if rest, ok := strings.CutPrefix(metric, "fs_put_ssh_"); ok && !strings.HasPrefix(rest, "native_") {
		return "fs_put_ssh_native_" + rest, true
	}
	return "", false
}

// percentiles returns the median and the 99th percentile (nearest rank)
// of v; when higherIsBetter, the "p99" is the slow tail: the 1st
// percentile. The same rule is written in bench.star and
// mitogen_bench.py.
func percentiles(v []float64, higherIsBetter bool) (median, p99 float64) {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return 0, 0
	}
	rank := (99*n + 99) / 100 // ceil(0.99 n), 1-based
	median = s[n/2]
	if higherIsBetter {
		return median, s[n-rank]
	}
	return median, s[rank-1]
}

// ---- the workloads ----

// benchSpawn times fork+exec+exit+wait of a static binary: the floor of
// local() + first call.
func benchSpawn(ctx context.Context, c *config, self string, e *emitter) error {
	bin, args := self, []string{"floor-exit"}
	if c.spawnBinary != "" {
		bin, args = c.spawnBinary, c.spawnArgs
	}
	samples := make([]time.Duration, 0, c.spawnReps)
	for i := 0; i < c.spawnReps; i++ {
		cmd := exec.CommandContext(ctx, bin, args...)
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("running %s %s: %w", bin, strings.Join(args, " "), err)
		}
		samples = append(samples, time.Since(t0))
	}
	return e.times("local_first_call", "ms", samples)
}

// child is a started helper process with pipes to its stdin and stdout.
type child struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    io.ReadCloser
	closed bool
	err    error
}

func startChild(ctx context.Context, self string, args ...string) (*child, error) {
	return startCmd(exec.CommandContext(ctx, self, args...), self, args)
}

// startChildOn starts the role like startChild, on the given CPUs
// (taskset -c): every thread of the child is created there.
func startChildOn(ctx context.Context, cpus, self string, args ...string) (*child, error) {
	return startCmd(exec.CommandContext(ctx, "taskset", append([]string{"-c", cpus, self}, args...)...), self, args)
}

func startCmd(cmd *exec.Cmd, self string, args []string) (*child, error) {
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s %s: %w", self, strings.Join(args, " "), err)
	}
	return &child{cmd: cmd, in: in, out: out}, nil
}

// close ends the child by closing its stdin and waits for it; a second
// close returns the first one's result.
func (ch *child) close() error {
	if ch.closed {
		return ch.err
	}
	ch.closed = true
	ch.in.Close()
	if err := ch.cmd.Wait(); err != nil {
		ch.err = fmt.Errorf("%s: %w", strings.Join(ch.cmd.Args, " "), err)
	}
	return ch.err
}

// pingPong times n round trips of one msgSize message through ch.
func pingPong(ch *child, n int) ([]time.Duration, error) {
	msg := make([]byte, msgSize)
	buf := make([]byte, msgSize)
	samples := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := ch.in.Write(msg); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(ch.out, buf); err != nil {
			return nil, err
		}
		samples = append(samples, time.Since(t0))
	}
	return samples, nil
}

// benchRTT: a 64-byte message to an echoing process and back, the floor
// of a no-op call's round trip.
func benchRTT(ctx context.Context, c *config, self string, e *emitter) error {
	var ch *child
	var err error
	if c.childCPU != "" {
		ch, err = startChildOn(ctx, c.childCPU, self, "floor-echo")
	} else {
		ch, err = startChild(ctx, self, "floor-echo")
	}
	if err != nil {
		return err
	}
	pingPong(ch, min(100, c.rttReps)) // warm up
	samples, err := pingPong(ch, c.rttReps)
	var steady []time.Duration
	if err == nil {
		// As bench.star: the same exchange after twice as many again.
		if _, err = pingPong(ch, c.rttReps); err == nil {
			steady, err = pingPong(ch, c.rttReps)
		}
	}
	if cerr := ch.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := e.times("call_rtt", "us", samples); err != nil {
		return err
	}
	return e.times("call_rtt_steady", "us", steady)
}

// benchPipelined: n messages written back to back while the replies are
// read, the floor of n call_async + Select.all.
func benchPipelined(ctx context.Context, c *config, self string, e *emitter) error {
	ch, err := startChild(ctx, self, "floor-echo")
	if err != nil {
		return err
	}
	defer ch.close()
	for _, n := range c.pipelined {
		samples := make([]time.Duration, 0, c.pipeReps)
		for r := 0; r < c.pipeReps; r++ {
			d, err := pipelineOnce(ch, n)
			if err != nil {
				return err
			}
			samples = append(samples, d)
		}
		if err := e.rates(fmt.Sprintf("pipelined_%d", n), "calls/s", float64(n), samples); err != nil {
			return err
		}
	}
	return ch.close()
}

func pipelineOnce(ch *child, n int) (time.Duration, error) {
	msg := make([]byte, msgSize)
	werr := make(chan error, 1)
	t0 := time.Now()
	go func() {
		for i := 0; i < n; i++ {
			if _, err := ch.in.Write(msg); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	_, rerr := io.CopyN(io.Discard, ch.out, int64(n*msgSize))
	d := time.Since(t0)
	if err := <-werr; err != nil {
		return 0, err
	}
	return d, rerr
}

// benchTwoHop: a round trip through a relay process to an echo process
// it started, the floor of a call via one intermediate context.
func benchTwoHop(ctx context.Context, c *config, self string, e *emitter) error {
	ch, err := startChild(ctx, self, "floor-relay")
	if err != nil {
		return err
	}
	pingPong(ch, min(100, c.twoHopReps))
	samples, err := pingPong(ch, c.twoHopReps)
	if cerr := ch.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return e.times("two_hop_rtt", "us", samples)
}

// benchChildren starts c.children idle processes one after another, each
// answering one byte when ready (the floor of starting N contexts), then
// sends one byte to all and reads all the answers (the floor of one call
// on all of them).
func benchChildren(ctx context.Context, c *config, self string, e *emitter) error {
	var starts, calls []time.Duration
	for r := 0; r < c.childReps; r++ {
		kids := make([]*child, 0, c.children)
		one := make([]byte, 1)
		t0 := time.Now()
		var err error
		for i := 0; i < c.children && err == nil; i++ {
			var k *child
			if k, err = startChild(ctx, self, "floor-idle"); err == nil {
				kids = append(kids, k)
				_, err = io.ReadFull(k.out, one)
			}
		}
		starts = append(starts, time.Since(t0))
		t1 := time.Now()
		for _, k := range kids {
			if err == nil {
				_, err = k.in.Write(one)
			}
		}
		for _, k := range kids {
			if err == nil {
				_, err = io.ReadFull(k.out, one)
			}
		}
		calls = append(calls, time.Since(t1))
		for _, k := range kids {
			if cerr := k.close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return err
		}
	}
	if err := e.times(fmt.Sprintf("children_%d_start", c.children), "ms", starts); err != nil {
		return err
	}
	return e.times(fmt.Sprintf("children_%d_call", c.children), "ms", calls)
}

// benchRSS reports the resident size of an idle Go process that has
// done one pipe exchange: the floor of an idle child's RSS.
func benchRSS(ctx context.Context, c *config, self string, e *emitter) error {
	k, err := startChild(ctx, self, "floor-idle")
	if err != nil {
		return err
	}
	one := make([]byte, 1)
	if _, err = io.ReadFull(k.out, one); err == nil {
		if _, err = k.in.Write(one); err == nil {
			_, err = io.ReadFull(k.out, one)
		}
	}
	var rss float64
	if err == nil {
		rss, err = vmRSS(k.cmd.Process.Pid)
	}
	if cerr := k.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return e.values("rss_child_idle", "MiB", []float64{rss})
}

// vmRSS reads VmRSS of pid from /proc, in MiB.
func vmRSS(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: bad VmRSS %q", pid, rest)
			}
			return float64(kb) / 1024, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}

// benchBulk moves c.bulkMiB MiB through a pipe each way: child to parent
// (the floor of a large call result) and parent to child (of a large
// argument).
func benchBulk(ctx context.Context, c *config, self string, e *emitter) error {
	size := int64(c.bulkMiB) << 20
	ch, err := startChild(ctx, self, "floor-bulk", strconv.FormatInt(size, 10))
	if err != nil {
		return err
	}
	defer ch.close()
	block := make([]byte, bulkChunk)
	for i := range block {
		block[i] = 'x'
	}
	var results, args []time.Duration
	ack := make([]byte, 1)
	for r := 0; r < c.bulkReps; r++ {
		t0 := time.Now()
		if _, err := ch.in.Write([]byte{'r'}); err != nil {
			return err
		}
		if _, err := io.CopyN(io.Discard, ch.out, size); err != nil {
			return fmt.Errorf("reading the bulk result: %w", err)
		}
		results = append(results, time.Since(t0))

		t0 = time.Now()
		if _, err := ch.in.Write([]byte{'w'}); err != nil {
			return err
		}
		if err := writeN(ch.in, block, size); err != nil {
			return err
		}
		if _, err := io.ReadFull(ch.out, ack); err != nil {
			return fmt.Errorf("reading the bulk ack: %w", err)
		}
		args = append(args, time.Since(t0))
	}
	mib := float64(c.bulkMiB)
	if err := e.rates(fmt.Sprintf("bulk_result_%dm", c.bulkMiB), "MiB/s", mib, results); err != nil {
		return err
	}
	if err := e.rates(fmt.Sprintf("bulk_arg_%dm", c.bulkMiB), "MiB/s", mib, args); err != nil {
		return err
	}
	return ch.close()
}

// writeN writes n bytes to w, block after block.
func writeN(w io.Writer, block []byte, n int64) error {
	for n > 0 {
		b := block
		if int64(len(b)) > n {
			b = b[:n]
		}
		m, err := w.Write(b)
		if err != nil {
			return err
		}
		n -= int64(m)
	}
	return nil
}

// ---- child roles ----

// Stdin and stdout of a role, switched to non-blocking mode so that Go's
// poller serves them as it serves mitostar's streams (a blocking read
// would hold the only P until sysmon takes it back).
var stdin, stdout *os.File

func pollStdio() {
	syscall.SetNonblock(0, true)
	syscall.SetNonblock(1, true)
	stdin, stdout = os.NewFile(0, "stdin"), os.NewFile(1, "stdout")
}

var roles = map[string]func(args []string) error{
	"floor-exit":  func([]string) error { return nil },
	"floor-echo":  roleEcho,
	"floor-relay": roleRelay,
	"floor-idle":  roleIdle,
	"floor-bulk":  roleBulk,
	"floor-sink":  roleSink,
}

// roleEcho writes back whatever it reads until EOF, in chunks of what
// one read returns, as a buffered stream reader would.
func roleEcho([]string) error {
	return copyChunks(stdout, stdin)
}

// copyChunks copies src to dst one read at a time (no splice, no
// buffering beyond one read), until EOF.
func copyChunks(dst io.Writer, src io.Reader) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// roleRelay starts an echo child and relays messages to it and back, one
// message at a time as a router would.
func roleRelay([]string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ch, err := startChild(context.Background(), self, "floor-echo")
	if err != nil {
		return err
	}
	down := make(chan error, 1)
	go func() { down <- copyChunks(stdout, ch.out) }()
	err = copyChunks(ch.in, stdin)
	ch.in.Close() // the echo child sees EOF, exits, and down sees EOF
	if derr := <-down; err == nil {
		err = derr
	}
	if cerr := ch.close(); err == nil {
		err = cerr
	}
	return err
}

// roleIdle says it is ready with one byte, then echoes bytes until EOF.
func roleIdle([]string) error {
	one := []byte{'.'}
	if _, err := stdout.Write(one); err != nil {
		return err
	}
	for {
		if _, err := stdin.Read(one); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if _, err := stdout.Write(one); err != nil {
			return err
		}
	}
}

// roleBulk serves commands until EOF: 'r' writes SIZE bytes, 'w' reads
// SIZE bytes and acknowledges them with one byte.
func roleBulk(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: floor-bulk SIZE")
	}
	size, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || size < 1 {
		return fmt.Errorf("bad size %q", args[0])
	}
	block := make([]byte, bulkChunk)
	for i := range block {
		block[i] = 'x'
	}
	cmd := make([]byte, 1)
	for {
		if _, err := io.ReadFull(stdin, cmd); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		switch cmd[0] {
		case 'r':
			if err := writeN(stdout, block, size); err != nil {
				return err
			}
		case 'w':
			if _, err := io.CopyN(io.Discard, stdin, size); err != nil {
				return err
			}
			if _, err := stdout.Write(cmd); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown command byte %q", cmd[0])
		}
	}
}
