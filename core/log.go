package core

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
)

// A LogSink receives the log records that reach a context: in the master,
// every context's records, each tagged with its context's name.
type LogSink interface {
	Log(rec LogRecord)
}

// WriterSink writes records as "[context] LEVEL text" lines.
type WriterSink struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriterSink returns a sink writing to w (os.Stderr when nil).
func NewWriterSink(w io.Writer) *WriterSink {
	if w == nil {
		w = os.Stderr
	}
	return &WriterSink{w: w}
}

// Log writes rec, one line per line of its text.
func (s *WriterSink) Log(rec LogRecord) {
	var b strings.Builder
	level := LevelName(slog.Level(rec.Level))
	for _, line := range strings.Split(strings.TrimRight(rec.Text, "\n"), "\n") {
		fmt.Fprintf(&b, "[%s] %s %s\n", rec.Context, level, line)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	io.WriteString(s.w, b.String())
}

// LevelName names a slog level the way Mitogen's logs do.
func LevelName(l slog.Level) string {
	switch {
	case l < slog.LevelInfo:
		return "DEBUG"
	case l < slog.LevelWarn:
		return "INFO"
	case l < slog.LevelError:
		return "WARNING"
	default:
		return "ERROR"
	}
}

// ParseLevel accepts debug, info, warning (or warn) and error.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warning", "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warning or error)", s)
}

// Emit logs text at level as this context: in the master straight to the
// sink, elsewhere forwarded to the master with FORWARD_LOG. Records below
// the context's log level are dropped.
func (r *Router) Emit(level slog.Level, text string) {
	r.emitFor(r.id, r.name, level, text)
}

// emitFor is Emit for a record about context id, named name here: this
// context, or a child whose output it captured.
func (r *Router) emitFor(id uint32, name string, level slog.Level, text string) {
	if level < r.LogLevel() {
		return
	}
	rec := LogRecord{Context: name, Level: int(level), Text: text, ID: id}
	if r.IsMaster() {
		r.sink.Log(rec)
		return
	}
	data, err := Marshal(rec)
	if err != nil {
		return
	}
	// Logging never waits: a record that finds the way to the master
	// full is dropped.
	r.routeNoWait(&Message{DstID: 0, Handle: handleForwardLog, Data: data}, 0)
}

// onForwardLog hands a record from another context to the sink, named as
// this router knows its context: a record is about its sender (SrcID,
// checked against the stream it came by) or about a child of the sender
// whose output the sender captured, and a context cannot log under
// another's name. A record about a child this router does not know yet
// (its output while it starts) shows the sender's name and the name the
// sender gives it: "ssh.web:22/sudo.root".
func (r *Router) onForwardLog(m *Message) {
	var rec LogRecord
	if err := m.Decode(&rec); err != nil {
		r.warnf("refused a log record from %s: %v", r.nameOf(m.SrcID), err)
		return
	}
	r.mu.Lock()
	sender := r.contextLocked(m.SrcID, "").Name()
	parent, known := r.parentOf[rec.ID]
	switch {
	case rec.ID == m.SrcID:
		rec.Context = sender
	case known && parent == m.SrcID:
		rec.Context = r.contexts[rec.ID].Name()
	default:
		rec.Context = sender + "/" + rec.Context
	}
	r.mu.Unlock()
	r.sink.Log(rec)
}

// LogHandler is a slog.Handler whose records go through Emit, so a
// child's debug log reaches the master tagged with the child's name.
type LogHandler struct {
	r     *Router
	attrs string
}

// NewLogHandler returns a slog.Handler that emits through r.
func NewLogHandler(r *Router) *LogHandler { return &LogHandler{r: r} }

// Enabled reports whether level passes the router's log level.
func (h *LogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.r.LogLevel() }

// Handle formats rec as "msg k=v ..." and emits it.
func (h *LogHandler) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	b.WriteString(h.attrs)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.r.Emit(rec.Level, b.String())
	return nil
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	return &LogHandler{r: h.r, attrs: b.String()}
}

// WithGroup is not needed by mitostar's logs; groups are flattened.
func (h *LogHandler) WithGroup(string) slog.Handler { return h }
