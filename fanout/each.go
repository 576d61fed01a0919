package fanout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
)

// EachOptions are each's keywords.
type EachOptions struct {
	Timeout float64 // seconds per call; 0: none
	Forks   int     // 0: the session's
	// Serial are the batch sizes: a count, or a percentage of the
	// targets ("30%"); the last one repeats. Empty: one batch.
	Serial []string
	// MaxFailPercentage stops before the next batch when more than this
	// share of the batch failed; negative: never.
	MaxFailPercentage float64
	// Title names the calls in progress and JSON output.
	Title string
	// Check, if set, may turn a successful call into a failure (set OK
	// false and Err) before it is counted: mitostar exec fails a
	// non-zero exit status.
	Check func(*Outcome)
	// OnDone, if set, is called (from the call's goroutine) once an
	// outcome is counted.
	OnDone func(*Outcome)
}

// An Outcome is one target's result of Each.
type Outcome struct {
	Target
	OK      bool
	Skipped bool // not run: max_fail_percentage stopped the batches
	Value   starlark.Value
	Err     *builtins.Error
	Changed bool
	Elapsed time.Duration
}

// eachBuiltin is each(targets, fn, *args, _timeout=None, _forks=None,
// serial=None, max_fail_percentage=None, **kwargs).
func (s *Session) eachBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) < 2 {
		return nil, errors.New("each: want each(targets, fn, *args, **kwargs)")
	}
	targets, err := targetsOf(args[0])
	if err != nil {
		return nil, err
	}
	fn := args[1]
	if _, ok := fn.(starlark.Callable); !ok {
		return nil, fmt.Errorf("each: fn must be a function, got %s", fn.Type())
	}
	o := EachOptions{MaxFailPercentage: -1, Title: functionName(fn)}
	var rest []starlark.Tuple
	for _, kv := range kwargs {
		k, v := string(kv[0].(starlark.String)), kv[1]
		switch k {
		case "_timeout":
			if v == starlark.None {
				continue
			}
			secs, ok := starlark.AsFloat(v)
			if !ok || secs <= 0 || math.IsNaN(secs) {
				return nil, fmt.Errorf("each: _timeout must be a positive number of seconds, got %s", v)
			}
			o.Timeout = secs
		case "_forks":
			if o.Forks, err = forksOf("each", "_forks", v, 0); err != nil {
				return nil, err
			}
		case "serial":
			if o.Serial, err = serialOf(v); err != nil {
				return nil, err
			}
		case "max_fail_percentage":
			if v == starlark.None {
				continue
			}
			p, ok := starlark.AsFloat(v)
			if !ok || p < 0 || p > 100 || math.IsNaN(p) {
				return nil, fmt.Errorf("each: max_fail_percentage must be a number from 0 to 100, got %s", v)
			}
			o.MaxFailPercentage = p
		default:
			rest = append(rest, kv)
		}
	}
	outcomes, err := s.Each(builtins.ThreadContext(thread), targets, fn, args[2:], rest, o)
	if err != nil {
		return nil, err
	}
	list := make([]starlark.Value, len(outcomes))
	for i, oc := range outcomes {
		v := oc.Value
		if v == nil {
			v = starlark.None
		}
		list[i] = &Result{host: oc.Name, ok: oc.OK, value: v, err: oc.Err, changed: oc.Changed, elapsed: oc.Elapsed.Seconds()}
	}
	return starlark.NewList(list), nil
}

// targetsOf reads each's targets: what connect returned, or contexts.
func targetsOf(v starlark.Value) ([]Target, error) {
	switch x := v.(type) {
	case *Hosts:
		out := make([]Target, len(x.contexts))
		for i, c := range x.contexts {
			out[i] = Target{Name: x.names[i], Context: c.C}
		}
		return out, nil
	case *builtins.Context:
		return []Target{{Name: x.C.Name(), Context: x.C}}, nil
	case *starlark.List, starlark.Tuple:
		var out []Target
		it := x.(starlark.Iterable).Iterate()
		defer it.Done()
		var e starlark.Value
		for it.Next(&e) {
			c, ok := e.(*builtins.Context)
			if !ok {
				return nil, fmt.Errorf("each: targets must be contexts, got a %s among them", e.Type())
			}
			out = append(out, Target{Name: c.C.Name(), Context: c.C})
		}
		return out, nil
	}
	return nil, fmt.Errorf("each: targets must be what connect returned or a list of contexts, got %s", v.Type())
}

// serialOf reads serial=: an int, "N%", or a list of those.
func serialOf(v starlark.Value) ([]string, error) {
	if v == starlark.None {
		return nil, nil
	}
	one := func(e starlark.Value) (string, error) {
		switch x := e.(type) {
		case starlark.Int:
			n, ok := x.Int64()
			if !ok || n <= 0 {
				return "", fmt.Errorf("each: serial must be positive, got %s", x)
			}
			return strconv.FormatInt(n, 10), nil
		case starlark.String:
			s := strings.TrimSpace(string(x))
			if n, err := strconv.Atoi(s); err == nil && n > 0 {
				return s, nil
			}
			p, ok := strings.CutSuffix(s, "%")
			f, err := strconv.ParseFloat(p, 64)
			if !ok || err != nil || f <= 0 || f > 100 {
				return "", fmt.Errorf("each: serial %q must be a count or a percentage such as \"30%%\"", s)
			}
			return s, nil
		}
		return "", fmt.Errorf("each: serial must be an int, a percentage or a list of them, got %s", e.Type())
	}
	if l, ok := v.(*starlark.List); ok {
		var out []string
		for i := 0; i < l.Len(); i++ {
			s, err := one(l.Index(i))
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		if len(out) == 0 {
			return nil, errors.New("each: serial is an empty list")
		}
		return out, nil
	}
	s, err := one(v)
	if err != nil {
		return nil, err
	}
	return []string{s}, nil
}

// batches splits n targets into serial batches, as Ansible's serial:
// percentages of n rounded down (at least 1), the last size repeating.
func batches(n int, serial []string) [][2]int {
	if len(serial) == 0 {
		return [][2]int{{0, n}}
	}
	var out [][2]int
	for start, i := 0, 0; start < n; i++ {
		spec := serial[min(i, len(serial)-1)]
		size := 0
		if p, ok := strings.CutSuffix(spec, "%"); ok {
			f, _ := strconv.ParseFloat(p, 64)
			size = int(float64(n) * f / 100)
		} else {
			size, _ = strconv.Atoi(spec)
		}
		size = max(size, 1)
		end := min(start+size, n)
		out = append(out, [2]int{start, end})
		start = end
	}
	return out
}

func functionName(fn starlark.Value) string {
	if n, ok := fn.(interface{ Name() string }); ok {
		return n.Name()
	}
	return fn.String()
}

// Each calls fn(*args, **kwargs) on every target, at most Forks at a
// time, batch after batch. A failure is that target's outcome and never
// stops the others; the error return is for a call that cannot be made
// at all (fn cannot travel, an argument cannot be encoded).
func (s *Session) Each(ctx context.Context, targets []Target, fn starlark.Value, args starlark.Tuple, kwargs []starlark.Tuple, o EachOptions) ([]Outcome, error) {
	s.mu.Lock()
	s.used = true
	s.mu.Unlock()
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	wrapper, ok := builtins.Lookup(callName)
	if !ok {
		return nil, fmt.Errorf("each: %s is not registered", callName)
	}
	// The arguments are encoded once, here, on the caller's goroutine:
	// Starlark values must not be read by several goroutines.
	encArgs, encTail, err := builtins.EncodeArgs(rt, append(starlark.Tuple{fn}, args...), kwargs)
	if err != nil {
		return nil, fmt.Errorf("each: %w", err)
	}
	forks := o.Forks
	if forks <= 0 {
		forks = s.opts.Forks
	}
	out := make([]Outcome, len(targets))
	for i, t := range targets {
		out[i].Target = t
		s.record(t.Name, func(*hostStat) {}) // the recap lists hosts in this order
	}
	p := s.progress()
	stopped := ""
	for _, b := range batches(len(targets), o.Serial) {
		batch := out[b[0]:b[1]]
		if stopped != "" {
			for i := range batch {
				batch[i].Skipped = true
				batch[i].Err = &builtins.Error{Kind: "Error", Message: stopped, Context: batch[i].Name}
				s.recordOutcome(&batch[i], o.Title)
			}
			continue
		}
		reqs := make([]*core.CallRequest, len(batch))
		for i, oc := range batch {
			// Build on this goroutine too: each target gets the modules
			// it still lacks with its first call.
			inner, err := rt.CallRequest(ctx, oc.Context, fn, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("each: %w", err)
			}
			req, err := rt.CallRequest(ctx, oc.Context, wrapper, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("each: %w", err)
			}
			req.Args, req.ArgsTail, req.Ext, req.Timeout = encArgs, encTail, inner.Ext, o.Timeout
			reqs[i] = req
		}
		names := make([]string, len(batch))
		for i, oc := range batch {
			names[i] = oc.Name
		}
		p.Begin("each "+o.Title, names)
		sem := make(chan struct{}, forks)
		var wg sync.WaitGroup
		for i := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					batch[i].Err = builtins.ErrorOf(context.Cause(ctx), batch[i].Name)
					s.recordOutcome(&batch[i], o.Title)
					return
				}
				defer func() { <-sem }()
				s.callOne(ctx, rt.Decoder(), &batch[i], reqs[i], o)
				if o.Check != nil && batch[i].OK {
					o.Check(&batch[i])
				}
				s.recordOutcome(&batch[i], o.Title)
				if o.OnDone != nil {
					o.OnDone(&batch[i])
				}
			}()
		}
		wg.Wait()
		p.End()
		if o.MaxFailPercentage >= 0 {
			failed := 0
			for _, oc := range batch {
				if !oc.OK {
					failed++
				}
			}
			if pct := float64(failed) * 100 / float64(len(batch)); pct > o.MaxFailPercentage {
				stopped = fmt.Sprintf("not run: %d of %d hosts of the previous batch failed (%.0f%%), more than max_fail_percentage=%g", failed, len(batch), pct, o.MaxFailPercentage)
			}
		}
	}
	return out, nil
}

// callOne makes one target's call and fills its outcome.
func (s *Session) callOne(ctx context.Context, dec *builtins.Decoder, oc *Outcome, req *core.CallRequest, o EachOptions) {
	s.progress().HostStart(oc.Name)
	start := time.Now()
	defer func() { oc.Elapsed = time.Since(start) }()
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		// A little more than the call's own limit, so that the target's
		// TimeoutError arrives first.
		ctx, cancel = context.WithTimeout(ctx, time.Duration(o.Timeout*float64(time.Second))+2*time.Second)
		defer cancel()
	}
	raw, err := oc.Context.CallRaw(ctx, req)
	if err != nil {
		var te *core.TimeoutError
		if errors.As(err, &te) {
			err = &core.RemoteError{Kind: "TimeoutError", Message: fmt.Sprintf("call to %s timed out after %gs", oc.Name, o.Timeout), Context: oc.Name}
		}
		oc.Err = builtins.ErrorOf(err, oc.Name)
		return
	}
	v, err := dec.Decode(raw)
	if err != nil {
		oc.Err = builtins.ErrorOf(err, oc.Name)
		return
	}
	pair, ok := v.(starlark.Tuple)
	if !ok || len(pair) != 2 {
		oc.Err = &builtins.Error{Kind: "Error", Message: fmt.Sprintf("%s returned %s, not (value, changed)", callName, v.Type()), Context: oc.Name}
		return
	}
	var changed int64
	if err := starlark.AsInt(pair[1], &changed); err != nil {
		oc.Err = &builtins.Error{Kind: "Error", Message: callName + ": bad changed count", Context: oc.Name}
		return
	}
	oc.OK, oc.Value, oc.Changed = true, pair[0], changed > 0
}

// recordOutcome counts an outcome into the recap and reports it.
func (s *Session) recordOutcome(oc *Outcome, title string) {
	s.record(oc.Name, func(st *hostStat) {
		st.elapsed += oc.Elapsed
		switch {
		case oc.Skipped:
			st.skipped++
		case oc.OK:
			st.ok++
			if oc.Changed {
				st.changed++
			}
		default:
			st.failed++
			st.errors = append(st.errors, oc.Err.String())
		}
	})
	ev := Event{Host: oc.Name, Phase: "each", Task: title, Elapsed: oc.Elapsed, Err: oc.Err}
	switch {
	case oc.Skipped:
		ev.Status = StatusSkipped
	case oc.OK && oc.Changed:
		ev.Status = StatusChanged
	case oc.OK:
		ev.Status = StatusOK
	default:
		ev.Status = StatusFailed
	}
	s.progress().HostDone(ev)
	s.writeJSON(ev, oc.Value)
}
