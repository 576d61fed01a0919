package fanout

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
)

// Status is how a host event ended.
type Status int

// The statuses of host events.
const (
	StatusOK Status = iota
	StatusChanged
	StatusFailed
	StatusUnreachable
	StatusSkipped
)

func (st Status) String() string {
	return [...]string{"ok", "changed", "failed", "unreachable", "skipped"}[st]
}

// An Event is one host finishing a connection or a call.
type Event struct {
	Host    string
	Phase   string // "connect" or "each"
	Task    string // each's function
	Status  Status
	Elapsed time.Duration
	Err     *builtins.Error // failed, unreachable and skipped
}

// hostStat is what the recap shows of one host.
type hostStat struct {
	ok, changed, failed, skipped int
	unreachable                  bool
	elapsed                      time.Duration
	errors                       []string
}

// record updates host's recap line.
func (s *Session) record(host string, f func(*hostStat)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats[host]
	if st == nil {
		st = &hostStat{}
		s.stats[host] = st
		s.order = append(s.order, host)
	}
	f(st)
}

// ExitStatus is the run's exit status by its hosts: 3 when one failed,
// 4 when some were unreachable and none failed, else 0.
func (s *Session) ExitStatus() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	unreachable := false
	for _, st := range s.stats {
		if st.failed > 0 {
			return 3
		}
		unreachable = unreachable || st.unreachable
	}
	if unreachable {
		return 4
	}
	return 0
}

// Recap writes the table of every host the run met: ok, changed, failed,
// unreachable, skipped and elapsed, then each failure with its error.
// color adds ANSI colours (a terminal without NO_COLOR).
func (s *Session) Recap(w io.Writer, color bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	paint := painter(color)
	width := len("host")
	for _, h := range s.order {
		width = max(width, len(h))
	}
	fmt.Fprintln(w, "RECAP")
	fmt.Fprintf(w, "%-*s  %4s  %7s  %6s  %11s  %7s  %8s\n", width, "host", "ok", "changed", "failed", "unreachable", "skipped", "elapsed")
	for _, h := range s.order {
		st := s.stats[h]
		unreach := 0
		if st.unreachable {
			unreach = 1
		}
		line := fmt.Sprintf("%-*s  %4d  %7d  %6d  %11d  %7d  %8s", width, h, st.ok, st.changed, st.failed, unreach, st.skipped, fmtElapsed(st.elapsed))
		fmt.Fprintln(w, paint(statusOfStat(st), line))
	}
	var failures []string
	for _, h := range s.order {
		for _, e := range s.stats[h].errors {
			failures = append(failures, fmt.Sprintf("  %s: %s", h, oneLine(e)))
		}
	}
	if len(failures) > 0 {
		fmt.Fprintln(w, "failures:")
		for _, f := range failures {
			fmt.Fprintln(w, paint(StatusFailed, f))
		}
	}
}

func statusOfStat(st *hostStat) Status {
	switch {
	case st.unreachable:
		return StatusUnreachable
	case st.failed > 0:
		return StatusFailed
	case st.changed > 0:
		return StatusChanged
	}
	return StatusOK
}

func fmtElapsed(d time.Duration) string {
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// oneLine puts an error on one line: its message's lines (the last
// output of ssh or sudo that says why) joined with " / ".
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " / ")
}

// writeJSON writes one host event as a JSON object (--json).
func (s *Session) writeJSON(ev Event, value starlark.Value) {
	if s.opts.JSON == nil {
		return
	}
	obj := map[string]any{
		"host":    ev.Host,
		"phase":   ev.Phase,
		"status":  ev.Status.String(),
		"ok":      ev.Status == StatusOK || ev.Status == StatusChanged,
		"changed": ev.Status == StatusChanged,
		"elapsed": round3(ev.Elapsed.Seconds()),
	}
	if ev.Task != "" {
		obj["task"] = ev.Task
	}
	if ev.Err != nil {
		obj["error"] = map[string]any{"kind": ev.Err.Kind, "message": ev.Err.Message, "context": ev.Err.Context, "traceback": ev.Err.Traceback}
	}
	if value != nil && value != starlark.None {
		obj["value"] = jsonValue(value)
	}
	s.emitJSON(obj)
}

// WriteRecapJSON writes the recap as one JSON object (--json).
func (s *Session) WriteRecapJSON() {
	if s.opts.JSON == nil {
		return
	}
	s.mu.Lock()
	hosts := map[string]any{}
	for _, h := range s.order {
		st := s.stats[h]
		hosts[h] = map[string]any{
			"ok": st.ok, "changed": st.changed, "failed": st.failed, "unreachable": st.unreachable,
			"skipped": st.skipped, "elapsed": round3(st.elapsed.Seconds()), "errors": append([]string{}, st.errors...),
		}
	}
	order := append([]string{}, s.order...)
	s.mu.Unlock()
	s.emitJSON(map[string]any{"recap": hosts, "hosts": order})
}

func (s *Session) emitJSON(obj map[string]any) {
	data, err := json.Marshal(obj)
	if err != nil {
		data, _ = json.Marshal(map[string]any{"host": obj["host"], "error": "encoding the result: " + err.Error()})
	}
	s.jsonMu.Lock()
	defer s.jsonMu.Unlock()
	if _, err := s.opts.JSON.Write(append(data, '\n')); err != nil && s.jsonError == nil {
		s.jsonError = err
	}
}

// JSONError is the first error writing --json output.
func (s *Session) JSONError() error {
	s.jsonMu.Lock()
	defer s.jsonMu.Unlock()
	return s.jsonError
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// jsonValue converts a call's result for JSON: plain data as itself,
// anything else (a context, a struct) as its string form.
func jsonValue(v starlark.Value) any {
	switch x := v.(type) {
	case starlark.NoneType:
		return nil
	case starlark.Bool:
		return bool(x)
	case starlark.Int:
		if i, ok := x.Int64(); ok {
			return i
		}
		return x.String()
	case starlark.Float:
		if math.IsInf(float64(x), 0) || math.IsNaN(float64(x)) {
			return x.String()
		}
		return float64(x)
	case starlark.String:
		return string(x)
	case starlark.Bytes:
		return string(x)
	case *starlark.List, starlark.Tuple:
		out := []any{}
		it := x.(starlark.Iterable).Iterate()
		defer it.Done()
		var e starlark.Value
		for it.Next(&e) {
			out = append(out, jsonValue(e))
		}
		return out
	case *starlark.Dict:
		out := map[string]any{}
		for _, kv := range x.Items() {
			k, ok := starlark.AsString(kv[0])
			if !ok {
				k = kv[0].String()
			}
			out[k] = jsonValue(kv[1])
		}
		return out
	case starlark.HasAttrs:
		if x.Type() == "struct" {
			out := map[string]any{}
			for _, n := range x.AttrNames() {
				if a, err := x.Attr(n); err == nil && a != nil {
					out[n] = jsonValue(a)
				}
			}
			return out
		}
	}
	return v.String()
}
