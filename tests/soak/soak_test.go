package soak

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
	"github.com/mitostar/mitostar/runtime"
)

// Children started by the soak are this test binary re-executed in the
// child role.
func TestMain(m *testing.M) {
	core.RunRole()
	testbed.QuickRaceExit()
	os.Exit(m.Run())
}

// FullEnv set to "full" runs the full soak (make soak); otherwise a
// version ten times smaller runs, as a normal test.
const FullEnv = "MITOSTAR_SOAK"

// The workload, full size: calls, pipelined calls, connects and
// shutdowns of local children, fs.put of small files.
var full = [4]int{100_000, 100_000, 10_000, 1_000}

func init() {
	builtins.Register("soak.stats", soakStats)
	builtins.Register("soak.record", soakRecord)
}

// A sample is one process's resources at rest.
type sample struct {
	FDs, Goroutines, Threads int
	RSSKiB, HeapKiB          int // resident set after a GC; live heap
}

var sampleFields = []string{"fds", "goroutines", "threads", "rss_kib", "heap_kib"}

func (s sample) values() []int { return []int{s.FDs, s.Goroutines, s.Threads, s.RSSKiB, s.HeapKiB} }

func (s sample) String() string {
	return fmt.Sprintf("fds %d, goroutines %d, threads %d, RSS %.1f MiB, heap %.1f MiB",
		s.FDs, s.Goroutines, s.Threads, float64(s.RSSKiB)/1024, float64(s.HeapKiB)/1024)
}

// measure samples this process. A process at rest may still be ending
// what the last operation started (a shut-down child's stream and
// pidfd); the counts are read until two readings 50 ms apart agree, for
// at most 2 s.
func measure() (sample, error) {
	var s sample
	var err error
	for range 40 {
		prev := s
		goruntime.GC()
		debug.FreeOSMemory()
		var ms goruntime.MemStats
		goruntime.ReadMemStats(&ms)
		s.HeapKiB = int(ms.HeapAlloc >> 10)
		s.Goroutines = goruntime.NumGoroutine()
		fds, e := os.ReadDir("/proc/self/fd")
		if e != nil {
			return s, e
		}
		s.FDs = len(fds) - 1 // the directory being read
		s.Threads, err = statusField("Threads")
		if err != nil {
			return s, err
		}
		if s.RSSKiB, err = statusField("VmRSS"); err != nil {
			return s, err
		}
		if s.FDs == prev.FDs && s.Goroutines == prev.Goroutines && s.Threads == prev.Threads {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s, nil
}

// statusField reads a number from /proc/self/status ("VmRSS" is in kB).
func statusField(name string) (int, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", name)
}

// soakStats is soak.stats(): this context's sample as a dict.
func soakStats(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
		return nil, err
	}
	s, err := measure()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	d := starlark.NewDict(len(sampleFields))
	for i, v := range s.values() {
		d.SetKey(starlark.String(sampleFields[i]), starlark.MakeInt(v))
	}
	return d, nil
}

// samples holds what soak.record received: phase → process → sample.
var (
	samplesMu sync.Mutex
	samples   = map[string]map[string]sample{}
)

// soakRecord is soak.record(phase, process, stats), in the master.
func soakRecord(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var phase, proc string
	var d *starlark.Dict
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "phase", &phase, "process", &proc, "stats", &d); err != nil {
		return nil, err
	}
	var s sample
	ptrs := []*int{&s.FDs, &s.Goroutines, &s.Threads, &s.RSSKiB, &s.HeapKiB}
	for i, name := range sampleFields {
		v, found, _ := d.Get(starlark.String(name))
		if !found {
			return nil, fmt.Errorf("%s: no %q in %s", b.Name(), name, d)
		}
		if err := starlark.AsInt(v, ptrs[i]); err != nil {
			return nil, fmt.Errorf("%s: %s: %v", b.Name(), name, err)
		}
	}
	samplesMu.Lock()
	if samples[phase] == nil {
		samples[phase] = map[string]sample{}
	}
	samples[phase][proc] = s
	samplesMu.Unlock()
	return starlark.None, nil
}

// warnings keeps the tree's log records at WARNING and above.
type warnings struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (w *warnings) Log(rec core.LogRecord) {
	if slog.Level(rec.Level) < slog.LevelWarn {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	if len(w.first) < 5 {
		w.first = append(w.first, fmt.Sprintf("[%s] %s %s", rec.Context, core.LevelName(slog.Level(rec.Level)), rec.Text))
	}
}

// Soak: a master and ten contexts take calls, pipelined calls, connects
// and shutdowns of local children, and fs.put of small files (soak.star),
// and their file descriptors, goroutines, threads and memory are sampled
// after a warm-up ("start") and after each of two equal halves of the
// work ("middle", "end"). Nothing may grow with the work: descriptors
// are the same in every sample, goroutines and threads do not grow past
// the warm-up, and memory at the end is that of the middle within noise.
// The CI version is ten times smaller than the full one (MITOSTAR_SOAK=full,
// make soak).
func TestSoak(t *testing.T) {
	scale := full
	timeout := 30 * time.Minute
	if os.Getenv(FullEnv) != "full" {
		for i := range scale {
			scale[i] /= 10
		}
		timeout = 5 * time.Minute
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte(strings.Repeat("soak data\n", 400)), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dst")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	argv := []string{strconv.Itoa(scale[0]), strconv.Itoa(scale[1]), strconv.Itoa(scale[2]), strconv.Itoa(scale[3]), src, dst}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	warned := &warnings{}
	r := core.NewMaster(core.Options{Sink: warned})
	defer r.CloseTimeout(5 * time.Second)
	out := &testbed.SyncBuffer{}
	rt := runtime.New(r, runtime.Options{Roots: []string{"."}, Argv: argv, Stdout: out})
	start := time.Now()
	err := rt.RunScript(ctx, "soak.star")
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		t.Log(line)
	}
	if err != nil {
		t.Fatalf("soak.star failed after %s: %s", time.Since(start).Round(time.Second), builtins.Backtrace(err))
	}
	t.Logf("the workload %v took %s", scale, time.Since(start).Round(time.Second))
	warned.mu.Lock()
	if warned.n > 0 {
		t.Logf("%d warnings in the tree's log, the first: %s", warned.n, strings.Join(warned.first, "; "))
	}
	warned.mu.Unlock()

	samplesMu.Lock()
	defer samplesMu.Unlock()
	procs := []string{"master"}
	for i := range 10 {
		procs = append(procs, "child"+strconv.Itoa(i))
	}
	for _, p := range procs {
		st, mid, end := samples["start"][p], samples["middle"][p], samples["end"][p]
		t.Logf("%-7s start:  %s", p, st)
		t.Logf("%-7s middle: %s", p, mid)
		t.Logf("%-7s end:    %s", p, end)
		if st.FDs == 0 || mid.FDs == 0 || end.FDs == 0 {
			t.Errorf("%s: samples missing: %v %v %v", p, st, mid, end)
			continue
		}
		checkStable(t, p, st, mid, end)
	}
	mid, end := samples["middle"]["master"], samples["end"]["master"]
	t.Logf("the master's live heap grew by %d KiB in the second half: %d bytes per connect", end.HeapKiB-mid.HeapKiB, (end.HeapKiB-mid.HeapKiB)*1024/max(scale[2]/2, 1))
	entries, err := os.ReadDir(dst)
	if err != nil || len(entries) != 10 {
		t.Errorf("the puts left %d files in %s (%v), want 10", len(entries), dst, err)
	}
}

// maxThreads bounds the threads of any process of the soak.
const maxThreads = 20

// checkStable checks one process's samples: no growth with the work
// beyond noise.
func checkStable(t *testing.T, p string, st, mid, end sample) {
	t.Helper()
	if mid.FDs != st.FDs || end.FDs != st.FDs {
		t.Errorf("%s: file descriptors %d, %d, %d at start, middle and end: they must not change", p, st.FDs, mid.FDs, end.FDs)
	}
	if end.Goroutines > st.Goroutines+2 || mid.Goroutines > st.Goroutines+2 {
		t.Errorf("%s: goroutines %d, %d, %d at start, middle and end: they grow with the work", p, st.Goroutines, mid.Goroutines, end.Goroutines)
	}
	// The Go runtime keeps the threads it started for system calls that
	// blocked at the same time (fork and exec, mostly): their number is
	// a high-water mark that may rise a little at any time, never one
	// per operation.
	if end.Threads > mid.Threads+4 || end.Threads > maxThreads {
		t.Errorf("%s: threads %d at the middle, %d at the end: they grow with the work", p, mid.Threads, end.Threads)
	}
	// Memory after a GC: the second half of the work may not leave more
	// behind than noise. The live heap is exact but for what background
	// goroutines hold at the moment; the resident set also holds what
	// the Go runtime has not returned yet, and under the race detector
	// its shadow memory.
	if end.HeapKiB > mid.HeapKiB+max(mid.HeapKiB/20, 512) {
		t.Errorf("%s: live heap %d KiB at the middle, %d KiB at the end: it grows with the work", p, mid.HeapKiB, end.HeapKiB)
	}
	rssNoise := max(mid.RSSKiB/10, 4096)
	if raceEnabled {
		rssNoise = max(mid.RSSKiB/5, 8192)
	}
	if end.RSSKiB > mid.RSSKiB+rssNoise {
		t.Errorf("%s: RSS %d KiB at the middle, %d KiB at the end: it grows with the work", p, mid.RSSKiB, end.RSSKiB)
	}
}
