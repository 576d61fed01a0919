package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"go.starlark.net/starlark"
	"golang.org/x/term"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/fanout"
	"github.com/mitostar/mitostar/inventory"
)

// inventoryEnv lists inventory sources when no -i is given.
const inventoryEnv = "MITOSTAR_INVENTORY"

// fanFlags are the many-hosts flags.
type fanFlags struct {
	inventories multiFlag
	limit       string
	forks       int
	progress    string
	jsonOut     string
	askPass     bool
	askBecome   bool
	becomeFile  string
	become      bool
	// defaultInventory are the sources used when -i gives none (a
	// bundle's inventory), before $MITOSTAR_INVENTORY.
	defaultInventory []string
}

func (f *fanFlags) register(fs *flag.FlagSet, exec bool) {
	fs.Var(&f.inventories, "i", "inventory source")
	fs.Var(&f.inventories, "inventory", "inventory source")
	fs.StringVar(&f.limit, "limit", "", "narrow every host pattern")
	fs.IntVar(&f.forks, "forks", fanout.DefaultForks, "hosts at once")
	fs.StringVar(&f.progress, "progress", "auto", "auto, always or never")
	fs.StringVar(&f.jsonOut, "json", "", "JSON lines file, - for stdout")
	fs.BoolVar(&f.askPass, "k", false, "ask for the ssh password")
	fs.BoolVar(&f.askPass, "ask-pass", false, "ask for the ssh password")
	fs.BoolVar(&f.askBecome, "K", false, "ask for the become password")
	fs.BoolVar(&f.askBecome, "ask-become-pass", false, "ask for the become password")
	fs.StringVar(&f.becomeFile, "become-password-file", "", "file holding the become password")
	if exec {
		fs.BoolVar(&f.become, "b", false, "become")
		fs.BoolVar(&f.become, "become", false, "become")
	}
}

// fanOpen is what the many-hosts flags set up for a run.
type fanOpen struct {
	options        fanout.Options
	stdout, stderr io.Writer // through the live display when it is on
	color          bool
	live           *fanout.Live
	jsonStdout     bool
	closers        []func()
}

func (fo *fanOpen) close() {
	for i := len(fo.closers) - 1; i >= 0; i-- {
		fo.closers[i]()
	}
}

// progressEnd erases a live display left on (an interrupted phase) and
// writes what its writers hold.
func (fo *fanOpen) progressEnd() {
	if fo.live != nil {
		fo.live.End()
		fo.live.Flush()
	}
}

// open reads the inventory, asks for passwords and sets up progress and
// JSON output.
func (f *fanFlags) open(stdout, stderr io.Writer) (*fanOpen, error) {
	fo := &fanOpen{stdout: stdout, stderr: stderr}
	if f.forks <= 0 {
		return nil, fmt.Errorf("--forks must be a positive number, got %d", f.forks)
	}
	switch f.progress {
	case "auto", "always", "never":
	default:
		return nil, fmt.Errorf("--progress must be auto, always or never, got %q", f.progress)
	}
	sources := []string(f.inventories)
	if len(sources) == 0 {
		sources = f.defaultInventory
	}
	if len(sources) == 0 {
		if env := os.Getenv(inventoryEnv); env != "" {
			for _, s := range strings.Split(env, ":") {
				if s != "" {
					sources = append(sources, s)
				}
			}
		}
	}
	inv, err := inventory.Load(sources...)
	if err != nil {
		return nil, err
	}
	if err := inv.SetLimit(f.limit); err != nil {
		return nil, err
	}
	fo.options = fanout.Options{Inventory: inv, Forks: f.forks, Become: f.become}
	if f.askBecome && f.becomeFile != "" {
		return nil, errors.New("-K and --become-password-file are exclusive")
	}
	if f.askPass {
		pw, err := askPassword("SSH password: ")
		if err != nil {
			return nil, fmt.Errorf("-k: %w", err)
		}
		fo.options.SSHPassword = &pw
	}
	if f.askBecome {
		pw, err := askPassword("BECOME password: ")
		if err != nil {
			return nil, fmt.Errorf("-K: %w", err)
		}
		fo.options.BecomePassword = &pw
	}
	if f.becomeFile != "" {
		pw, err := readPasswordFile(f.becomeFile)
		if err != nil {
			return nil, fmt.Errorf("--become-password-file: %w", err)
		}
		fo.options.BecomePassword = &pw
	}
	errFile, _ := stderr.(*os.File)
	outFile, _ := stdout.(*os.File)
	fo.color = fanout.UseColor(errFile)
	if f.progress == "always" || f.progress == "auto" && fanout.IsTerminal(errFile) {
		if errFile == nil {
			return nil, errors.New("--progress=always needs stderr to be a file")
		}
		fo.live = fanout.NewLive(errFile, fo.color)
		fo.options.Progress = fo.live
		fo.stderr = fo.live.Above(stderr)
		if fanout.IsTerminal(outFile) {
			fo.stdout = fo.live.Above(stdout)
		}
	} else {
		fo.options.Progress = fanout.NewLines(stderr, fo.color)
	}
	switch f.jsonOut {
	case "":
	case "-":
		fo.options.JSON = fo.stdout
		fo.jsonStdout = true
	default:
		jf, err := os.Create(f.jsonOut)
		if err != nil {
			return nil, fmt.Errorf("--json: %w", err)
		}
		w := bufio.NewWriter(jf)
		fo.options.JSON = w
		fo.closers = append(fo.closers, func() { w.Flush(); jf.Close() })
	}
	return fo, nil
}

// askPassword asks on the terminal without echo.
func askPassword(prompt string) (string, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("no terminal to ask the password on: %w", err)
	}
	defer tty.Close()
	// Echo goes off before the prompt shows (raw mode, and the line is
	// read by x/term's line editor): a password typed the moment the
	// prompt appears is never echoed.
	old, err := term.MakeRaw(int(tty.Fd()))
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	defer term.Restore(int(tty.Fd()), old)
	pw, err := term.NewTerminal(tty, "").ReadPassword(prompt)
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return pw, nil
}

// readPasswordFile reads a password: the file's first line.
func readPasswordFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSuffix(line, "\r"), nil
}

// runExec is mitostar exec: connect what pattern selects, run command
// on every host (exec.run, no shell) and print each host's output as it
// finishes; a non-zero exit status fails the host.
func runExec(ctx context.Context, s *fanout.Session, pattern string, command []string, fo *fanOpen, stdout io.Writer) error {
	targets, unreachable, err := s.ConnectPattern(ctx, pattern)
	if err != nil {
		return err
	}
	if len(targets)+len(unreachable) == 0 {
		fmt.Fprintf(fo.stderr, "mitostar exec: no hosts matched %q: nothing to do\n", pattern)
		return nil
	}
	var mu sync.Mutex
	show := func(text string) {
		if fo.jsonStdout {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		io.WriteString(stdout, text)
	}
	for _, u := range unreachable {
		show(fmt.Sprintf("%s | UNREACHABLE! >> %s\n", u.Name, builtins.ErrorOf(u.Err, u.Name)))
	}
	if len(targets) == 0 {
		return nil
	}
	run, ok := builtins.Lookup("exec.run")
	if !ok {
		return errors.New("exec: the builtin exec.run is not registered")
	}
	argv := make([]starlark.Value, len(command))
	for i, a := range command {
		argv[i] = starlark.String(a)
	}
	_, err = s.Each(ctx, targets, run, starlark.Tuple{starlark.NewList(argv)}, nil, fanout.EachOptions{
		Title:             command[0],
		MaxFailPercentage: -1,
		Check: func(oc *fanout.Outcome) {
			if rc := execField(oc.Value, "rc"); rc != "0" {
				oc.OK = false
				oc.Err = &builtins.Error{Kind: "Error", Message: "non-zero return code " + rc, Context: oc.Name}
			}
		},
		OnDone: func(oc *fanout.Outcome) {
			var b strings.Builder
			switch {
			case oc.Value != nil && oc.Value != starlark.None:
				status := "OK"
				if !oc.OK {
					status = "FAILED"
				}
				fmt.Fprintf(&b, "%s | %s | rc=%s >>\n", oc.Name, status, execField(oc.Value, "rc"))
				for _, f := range []string{"stdout", "stderr"} {
					if text := execField(oc.Value, f); text != "" {
						b.WriteString(text)
						if !strings.HasSuffix(text, "\n") {
							b.WriteString("\n")
						}
					}
				}
			default:
				fmt.Fprintf(&b, "%s | FAILED! >> %s\n", oc.Name, oc.Err)
			}
			show(b.String())
		},
	})
	return err
}

// execField reads a field of exec.run's result struct as text.
func execField(v starlark.Value, name string) string {
	st, ok := v.(starlark.HasAttrs)
	if !ok {
		return ""
	}
	f, err := st.Attr(name)
	if err != nil || f == nil {
		return ""
	}
	if s, ok := starlark.AsString(f); ok {
		return s
	}
	return f.String()
}
