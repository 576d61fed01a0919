package fanout

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Progress receives host events while connect and each work.
type Progress interface {
	// Begin starts a phase ("connect web", "each deploy") over hosts.
	Begin(title string, hosts []string)
	// HostStart says a host's connection or call started.
	HostStart(host string)
	// HostDone says it ended.
	HostDone(ev Event)
	// End ends the phase.
	End()
}

type nopProgress struct{}

func (nopProgress) Begin(string, []string) {}
func (nopProgress) HostStart(string)       {}
func (nopProgress) HostDone(Event)         {}
func (nopProgress) End()                   {}

// UseColor reports whether output to f gets colours: only a terminal,
// and never with NO_COLOR set (to anything).
func UseColor(f *os.File) bool {
	if _, set := os.LookupEnv("NO_COLOR"); set {
		return false
	}
	return IsTerminal(f)
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool { return f != nil && term.IsTerminal(int(f.Fd())) }

// statusSGR is the colour of each status's word, as an SGR sequence
// (ECMA-48 Select Graphic Rendition); sgrReset ends it.
var statusSGR = [...]string{
	StatusOK:          "\x1b[32m",   // green
	StatusChanged:     "\x1b[33m",   // yellow
	StatusFailed:      "\x1b[31;1m", // bold red
	StatusUnreachable: "\x1b[35;1m", // bold magenta
	StatusSkipped:     "\x1b[36m",   // cyan
}

// painter returns a function colouring text by status, or leaving it.
func painter(color bool) func(Status, string) string {
	if !color {
		return func(_ Status, s string) string { return s }
	}
	return func(st Status, s string) string { return statusSGR[st] + s + sgrReset }
}

// eventLine is the one line a host event prints: "[web1] ok 0.52s",
// "[db1] FAILED 1.20s: CallError: ...".
func eventLine(ev Event, paint func(Status, string) string) string {
	word := ev.Status.String()
	if ev.Status == StatusFailed || ev.Status == StatusUnreachable {
		word = strings.ToUpper(word)
	}
	line := fmt.Sprintf("[%s] %s %s", ev.Host, paint(ev.Status, word), fmtElapsed(ev.Elapsed))
	if ev.Phase == "connect" && ev.Status == StatusOK {
		line = fmt.Sprintf("[%s] connected %s", ev.Host, fmtElapsed(ev.Elapsed))
	}
	if ev.Err != nil {
		line += ": " + oneLine(ev.Err.String())
	}
	return line
}

// Lines reports one line per finished host on w, with a line when a
// phase begins: what a log file or a pipe gets.
type Lines struct {
	mu    sync.Mutex
	w     io.Writer
	paint func(Status, string) string
}

// NewLines reports to w, in colour when color is true.
func NewLines(w io.Writer, color bool) *Lines { return &Lines{w: w, paint: painter(color)} }

// Begin prints the phase.
func (l *Lines) Begin(title string, hosts []string) {
	if len(hosts) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "== %s (%d hosts)\n", title, len(hosts))
}

// HostStart prints nothing: a line per start would double the output.
func (l *Lines) HostStart(string) {}

// HostDone prints the host's line.
func (l *Lines) HostDone(ev Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.w, eventLine(ev, l.paint))
}

// End prints nothing.
func (l *Lines) End() {}

// Live is the terminal display: below the output, a block of lines
// redrawn in place — the phase, counts of done, failed, unreachable and
// running hosts, and the running hosts with their elapsed time — while
// each failure is printed above it as it happens. The block never grows
// past the screen (so redraws never scroll), is drawn in one write (no
// flicker) and is erased when the phase ends, leaving only what was
// printed above it.
type Live struct {
	mu      sync.Mutex
	out     io.Writer
	size    func() (cols, rows int)
	paint   func(Status, string) string
	now     func() time.Time
	tick    time.Duration
	title   string
	total   int
	done    int
	failed  int
	unreach int
	running map[string]time.Time
	drawn   int  // lines of the block on the screen
	active  bool // a phase is on
	stop    chan struct{}
	stopped chan struct{}
	partial map[io.Writer][]byte // unfinished lines of Above writers
}

// NewLive draws on the terminal f.
func NewLive(f *os.File, color bool) *Live {
	return &Live{
		out: f,
		size: func() (int, int) {
			c, r, err := term.GetSize(int(f.Fd()))
			if err != nil || c <= 0 || r <= 0 {
				return 80, 24
			}
			return c, r
		},
		paint:   painter(color),
		now:     time.Now,
		tick:    200 * time.Millisecond,
		running: map[string]time.Time{},
		partial: map[io.Writer][]byte{},
	}
}

// Begin starts drawing the block for a phase.
func (l *Live) Begin(title string, hosts []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(hosts) == 0 {
		return
	}
	l.title, l.total, l.done, l.failed, l.unreach = title, len(hosts), 0, 0, 0
	clear(l.running)
	if !l.active {
		l.active = true
		io.WriteString(l.out, hideCursor)
		l.stop, l.stopped = make(chan struct{}), make(chan struct{})
		go l.ticker(l.stop, l.stopped)
	}
	l.redraw(nil)
}

func (l *Live) ticker(stop, stopped chan struct{}) {
	defer close(stopped)
	t := time.NewTicker(l.tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			l.mu.Lock()
			if l.active {
				l.redraw(nil)
			}
			l.mu.Unlock()
		}
	}
}

// HostStart adds a running host.
func (l *Live) HostStart(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running[host] = l.now()
	if l.active {
		l.redraw(nil)
	}
}

// HostDone counts a finished host; a failure is printed above the block.
func (l *Live) HostDone(ev Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.running, ev.Host)
	l.done++
	var above []string
	switch ev.Status {
	case StatusFailed:
		l.failed++
		above = append(above, eventLine(ev, l.paint))
	case StatusUnreachable:
		l.unreach++
		above = append(above, eventLine(ev, l.paint))
	}
	if l.active {
		l.redraw(above)
	} else if len(above) > 0 {
		io.WriteString(l.out, strings.Join(above, "\n")+"\n")
	}
}

// End erases the block.
func (l *Live) End() {
	l.mu.Lock()
	if !l.active {
		l.mu.Unlock()
		return
	}
	l.active = false
	var b bytes.Buffer
	l.erase(&b)
	b.WriteString(showCursor)
	l.out.Write(b.Bytes())
	stop, stopped := l.stop, l.stopped
	l.mu.Unlock()
	close(stop)
	<-stopped
}

// Above returns a writer whose lines are printed above the block (for
// logs and print() while the display is on).
func (l *Live) Above(w io.Writer) io.Writer { return &aboveWriter{l: l, w: w} }

type aboveWriter struct {
	l *Live
	w io.Writer
}

func (a *aboveWriter) Write(p []byte) (int, error) {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := append(l.partial[a.w], p...)
	i := bytes.LastIndexByte(buf, '\n')
	if i < 0 {
		l.partial[a.w] = buf
		return len(p), nil
	}
	l.partial[a.w] = append([]byte(nil), buf[i+1:]...)
	lines := buf[:i+1]
	if !l.active || l.drawn == 0 {
		_, err := a.w.Write(lines)
		return len(p), err
	}
	var b bytes.Buffer
	l.erase(&b)
	l.out.Write(b.Bytes())
	a.w.Write(lines)
	l.redraw(nil)
	return len(p), nil
}

// Flush writes what Above writers hold of an unfinished line.
func (l *Live) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for w, p := range l.partial {
		if len(p) > 0 {
			w.Write(append(p, '\n'))
		}
		delete(l.partial, w)
	}
}

// erase moves to the block's first line and clears to the end of the
// screen.
func (l *Live) erase(b *bytes.Buffer) {
	if l.drawn > 0 {
		b.WriteString("\r")
		b.WriteString(cursorPreviousLine(l.drawn))
		b.WriteString(eraseBelow)
		l.drawn = 0
	}
}

// redraw replaces the block, printing lines above it first.
func (l *Live) redraw(above []string) {
	cols, rows := l.size()
	var b bytes.Buffer
	b.WriteString(syncBegin)
	l.erase(&b)
	for _, line := range above {
		b.WriteString(line)
		b.WriteString("\n")
	}
	block := l.block(rows - 1)
	for _, line := range block {
		b.WriteString(truncate(line, cols-1))
		b.WriteString("\n")
	}
	l.drawn = len(block)
	b.WriteString(syncEnd)
	l.out.Write(b.Bytes())
}

// block is the display's lines, at most max of them.
func (l *Live) block(max int) []string {
	if max < 1 {
		return nil
	}
	counts := fmt.Sprintf("%s  %d/%d done  %s  %s  %d running", l.title, l.done, l.total,
		l.paint(StatusFailed, fmt.Sprintf("%d failed", l.failed)),
		l.paint(StatusUnreachable, fmt.Sprintf("%d unreachable", l.unreach)), len(l.running))
	lines := []string{counts}
	type run struct {
		host  string
		since time.Time
	}
	runs := make([]run, 0, len(l.running))
	for h, t := range l.running {
		runs = append(runs, run{h, t})
	}
	sort.Slice(runs, func(i, j int) bool {
		if !runs[i].since.Equal(runs[j].since) {
			return runs[i].since.Before(runs[j].since)
		}
		return runs[i].host < runs[j].host
	})
	now := l.now()
	for i, r := range runs {
		if len(lines) == max-1 && len(runs)-i > 1 {
			lines = append(lines, fmt.Sprintf("  … and %d more", len(runs)-i))
			break
		}
		if len(lines) >= max {
			break
		}
		lines = append(lines, fmt.Sprintf("  %-30s %6.1fs", r.host, now.Sub(r.since).Seconds()))
	}
	return lines[:min(len(lines), max)]
}
