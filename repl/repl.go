// Package repl implements mitostar repl: Starlark typed at a prompt and
// run in the master, with line editing, history, multi-line input and
// completion of names and attributes. Globals live across lines, so a
// context started on one line (web = router.local()) is called on the
// next (web.call(os.getpid)).
//
// Each line runs on a thread of its own, bound to a context.Context: an
// interrupt (Ctrl-C, SIGINT) cancels the line's thread and, through it,
// the calls it waits for in other contexts; the session goes on.
// Errors are printed and the session goes on. End of input (Ctrl-D)
// ends the session; the caller then shuts the tree down.
package repl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync/atomic"

	"github.com/chzyer/readline"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/runtime"
)

// Prompts: a new statement, and the lines that continue one.
const (
	Prompt         = ">>> "
	ContinuePrompt = "... "
)

// HistoryEnv names the history file; without it the history is kept in
// ~/.mitostar_history.
const HistoryEnv = "MITOSTAR_HISTORY"

// errInterrupted is the cause of a line stopped by an interrupt.
var errInterrupted = errors.New("interrupted")

// Options configure a REPL.
type Options struct {
	// Stdin, Stdout and Stderr are the terminal (os.Stdin, os.Stdout and
	// os.Stderr by default).
	Stdin          io.ReadCloser
	Stdout, Stderr io.Writer
	// HistoryFile keeps the lines typed across sessions; "" keeps none.
	HistoryFile string
}

// DefaultHistoryFile is $MITOSTAR_HISTORY, else ~/.mitostar_history, else
// "" (no history file).
func DefaultHistoryFile() string {
	if p := os.Getenv(HistoryEnv); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return home + "/.mitostar_history"
}

// A REPL reads Starlark at a prompt and runs it on a runtime.
type REPL struct {
	rl      *readline.Instance
	stdin   *readline.CancelableStdin
	stdout  io.Writer
	stderr  io.Writer
	globals starlark.StringDict
	reading atomic.Bool // the prompt waits for input
}

// New opens the terminal. Output written through Stdout and Stderr
// while the prompt waits (a child's log line) is printed above it.
func New(opts Options) (*REPL, error) {
	r := &REPL{}
	if opts.HistoryFile != "" {
		// What is typed may hold secrets: the history is the user's alone
		// (the line editor would create it readable by all).
		if f, err := os.OpenFile(opts.HistoryFile, os.O_CREATE|os.O_RDONLY, 0o600); err == nil {
			f.Close()
		}
	}
	if opts.Stdin == nil {
		opts.Stdin = os.Stdin
	}
	// Closing the line editor closes what it reads, and that must end a
	// read in progress: a cancelable reader does (os.Stdin does not).
	r.stdin = readline.NewCancelableStdin(opts.Stdin)
	cfg := &readline.Config{
		Prompt:            Prompt,
		HistoryFile:       opts.HistoryFile,
		HistorySearchFold: true,
		AutoComplete:      &completer{r: r},
		Stdin:             r.stdin,
		Stdout:            opts.Stdout,
		Stderr:            opts.Stderr,
		InterruptPrompt:   "^C",
		EOFPrompt:         "\n",
	}
	rl, err := readline.NewEx(cfg)
	if err != nil {
		return nil, fmt.Errorf("repl: the terminal: %w", err)
	}
	r.rl = rl
	r.stdout = &promptWriter{r: r, direct: orStd(opts.Stdout, os.Stdout), editor: rl.Stdout()}
	r.stderr = &promptWriter{r: r, direct: orStd(opts.Stderr, os.Stderr), editor: rl.Stderr()}
	return r, nil
}

func orStd(w, std io.Writer) io.Writer {
	if w == nil {
		return std
	}
	return w
}

// A promptWriter writes output: above the prompt while one waits for
// input (the editor clears the line, writes, and draws it again), as it
// is while a statement runs.
type promptWriter struct {
	r      *REPL
	direct io.Writer
	editor io.Writer
}

func (w *promptWriter) Write(p []byte) (int, error) {
	if w.r.reading.Load() {
		return w.editor.Write(p)
	}
	return w.direct.Write(p)
}

// Stdout is where the session's output goes (print() of the master).
func (r *REPL) Stdout() io.Writer { return r.stdout }

// Stderr is where its errors and logs go.
func (r *REPL) Stderr() io.Writer { return r.stderr }

// Close releases the terminal; a Run in progress returns.
func (r *REPL) Close() error {
	r.stdin.Close() // first: the editor's Close waits for its reader
	return r.rl.Close()
}

// Run reads and runs statements on rt until the input ends or ctx is
// done. Each interrupt received on interrupts while a statement runs
// cancels it. Its globals start as rt's predeclared names.
func (r *REPL) Run(ctx context.Context, rt *runtime.Runtime, interrupts <-chan os.Signal) error {
	r.globals = starlark.StringDict{}
	for k, v := range rt.Predeclared() {
		r.globals[k] = v
	}
	opts := *runtime.FileOptions
	opts.LoadBindsGlobally = true // load() at the prompt defines globals
	for ctx.Err() == nil {
		f, err := r.read(&opts)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, readline.ErrInterrupt):
			continue // Ctrl-C at the prompt drops what was typed
		case err != nil:
			fmt.Fprintln(r.stderr, err)
			continue
		}
		r.eval(ctx, rt, f, interrupts)
	}
	return ctx.Err()
}

// read reads one statement, over as many lines as it takes.
func (r *REPL) read(opts *syntax.FileOptions) (*syntax.File, error) {
	r.rl.SetPrompt(Prompt)
	var readErr error
	f, err := opts.ParseCompoundStmt("<stdin>", func() ([]byte, error) {
		r.reading.Store(true)
		line, err := r.rl.Readline()
		r.reading.Store(false)
		r.rl.SetPrompt(ContinuePrompt)
		if err != nil {
			readErr = err
			return nil, err
		}
		return []byte(line + "\n"), nil
	})
	if readErr != nil {
		return nil, readErr
	}
	return f, err
}

// eval runs one statement: an expression's value is printed (and kept
// in _), an error is printed with its backtrace.
func (r *REPL) eval(ctx context.Context, rt *runtime.Runtime, f *syntax.File, interrupts <-chan os.Signal) {
	drain(interrupts) // an interrupt from before the line is not for it
	lineCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() { // ends with the line
		defer close(watched)
		select {
		case <-interrupts:
			cancel(errInterrupted)
		case <-stop:
		}
	}()
	defer func() { close(stop); <-watched }()

	thread, done := rt.NewThreadContext("repl", lineCtx)
	defer done()
	var err error
	if expr := soleExpr(f); expr != nil {
		var v starlark.Value
		v, err = starlark.EvalExprOptions(f.Options, thread, expr, r.globals)
		if err == nil {
			r.globals["_"] = v
			if v != starlark.None {
				fmt.Fprintln(r.stdout, v)
			}
		}
	} else {
		err = starlark.ExecREPLChunk(f, thread, r.globals)
	}
	if err == nil {
		return
	}
	if context.Cause(lineCtx) == errInterrupted {
		fmt.Fprintln(r.stderr, "interrupted")
		return
	}
	fmt.Fprint(r.stderr, builtins.Backtrace(err))
}

// drain empties c.
func drain(c <-chan os.Signal) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// soleExpr returns the expression of a statement that is one.
func soleExpr(f *syntax.File) syntax.Expr {
	if len(f.Stmts) == 1 {
		if stmt, ok := f.Stmts[0].(*syntax.ExprStmt); ok {
			return stmt.X
		}
	}
	return nil
}

// names returns the keys of d, sorted.
func names(d starlark.StringDict) []string {
	out := make([]string, 0, len(d))
	for k := range d {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
