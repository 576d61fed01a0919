// Command mitostar runs a Starlark script that starts child contexts
// (local processes, over ssh, through sudo, into containers) and calls
// functions in them. The same binary is every child.
//
// Usage:
//
//	mitostar [flags] SCRIPT.star [ARG...]
//	mitostar run [flags] SCRIPT.star [ARG...]
//	mitostar exec [flags] PATTERN -- CMD [ARG...]
//	mitostar repl [flags]
//	mitostar check [-I DIR] SCRIPT.star
//	mitostar bundle SCRIPT.star -o FILE [--target OS/ARCH] [-i INVENTORY] [-I DIR]
//	mitostar version (or --version)
//	mitostar doc [NAME]
//	mitostar help
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	goruntime "runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/bundle"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/docs"
	"github.com/mitostar/mitostar/fanout"
	"github.com/mitostar/mitostar/repl"
	"github.com/mitostar/mitostar/runtime"
)

const usage = `usage: mitostar [flags] SCRIPT.star [ARG...]
       mitostar run [flags] SCRIPT.star [ARG...]
       mitostar exec [flags] [-b] PATTERN -- CMD [ARG...]
       mitostar repl [flags]
       mitostar check [-I DIR] SCRIPT.star
       mitostar bundle SCRIPT.star -o FILE [--target OS/ARCH] [-i INVENTORY] [-I DIR]
       mitostar version | --version
       mitostar doc [NAME]
       mitostar help

Runs SCRIPT.star: its top level, then main() if it defines one. ARGs are
available to the script (in every context) as argv. exec runs CMD on every
host PATTERN selects from the inventory, in parallel, and prints each
host's output. "mitostar doc NAME" prints the reference of NAME (a
predeclared name, a method such as Receiver.get, an error kind),
"mitostar doc" all of it.

repl runs Starlark typed at a prompt in the master, with line editing,
history, completion and contexts that live across lines (modules from
the working directory and -I; Ctrl-C stops a line, Ctrl-D ends). check
reports what would fail in SCRIPT.star and its modules, as file:line:
message, without starting a context (exit 1 on any problem). bundle
writes one executable FILE holding mitostar, the script, its modules,
their src= files and the inventory; running FILE [flags] [ARG...] runs
the script. --target takes mitostar-OS-ARCH from $MITOSTAR_DIST or beside
this executable.

flags:
  -I DIR                  add a module root (repeatable); the script's
                          directory is always the first one
  -v                      debug logging (the master's own log too)
  --log-level LEVEL       debug, info (default), warning or error
  --log-file FILE         write logs there instead of stderr
  --max-message-size N    largest message payload in bytes (default 134217728)
  --shutdown-timeout SEC  how long to wait for contexts to exit (default 5)
  --check                 check mode: operations (ops.*) report what they
                          would change and change nothing; check_mode is
                          True in every context
  --diff                  print each change an operation makes (or would
                          make), with its unified diff, under the name of
                          its context
  --ssh-transport T       openssh (default: the system's ssh program) or
                          native (SSH in mitostar itself) for ssh
                          connections that do not choose with transport=
  --profile DIR           write CPU and heap profiles of the master and of
                          every local child to DIR (for benchmarks)
  --version               print the version and exit
  -h, --help              this help

many hosts:
  -i FILE                 inventory: Ansible INI or YAML, a .star file, a
                          directory, or a host list "h1,h2," (repeatable;
                          default: $MITOSTAR_INVENTORY, ':'-separated)
  --limit PATTERN         narrow every host pattern of the run
  --forks N               hosts connected or called at once (default 50)
  --progress MODE         auto (a live display when stderr is a terminal),
                          always or never (one line per host event)
  --json FILE             one JSON object per host result, then the recap
                          (- for stdout)
  -k, --ask-pass          ask once for the ssh password
  -K, --ask-become-pass   ask once for the become (sudo/su/doas) password
  --become-password-file FILE
                          read the become password from FILE
  -b, --become            (exec) run CMD through each host's become method

exit status: 0 success, 1 the script failed, 2 bad usage, 3 a host failed,
4 hosts were unreachable and none failed, 130/143 interrupted by
SIGINT/SIGTERM.
`

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	core.RunRole() // a child (of a bundle too) serves its parent and exits here
	b, err := bundle.OpenSelf()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mitostar: %v\n", err)
		os.Exit(1)
	}
	if b != nil {
		os.Exit(runBundled(b, os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, nil))
}

// run runs the command line args; bundled, when set, is the extracted
// bundle this executable is: its script runs, with args as its flags
// and arguments.
func run(args []string, stdout, stderr io.Writer, bundled *bundle.Extracted) int {
	cmd := "run"
	if len(args) > 0 && bundled == nil {
		switch args[0] {
		case "version":
			return printVersion(stdout, stderr)
		case "help":
			return write(stdout, stderr, usage)
		case "doc":
			return doc(stdout, stderr, args[1:])
		case "check":
			return runCheck(args[1:], stdout, stderr)
		case "bundle":
			return runBundle(args[1:], stdout, stderr)
		case "run", "exec", "repl":
			cmd = args[0]
			args = args[1:]
		}
	}
	fs := flag.NewFlagSet("mitostar", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		roots      multiFlag
		verbose    bool
		logLevel   = "info"
		logFile    string
		maxSize    = core.DefaultMaxMessageSize
		shutdownTO = 5.0
		help       bool
		version    bool
		cpuProfile string
		profileDir string
		sshTr      string
		fan        fanFlags
		checkMode  bool
		showDiff   bool
	)
	fs.Var(&roots, "I", "module root")
	fs.BoolVar(&verbose, "v", false, "debug logging")
	fs.StringVar(&logLevel, "log-level", logLevel, "log level")
	fs.StringVar(&logFile, "log-file", "", "log file")
	fs.IntVar(&maxSize, "max-message-size", maxSize, "max message size")
	fs.Float64Var(&shutdownTO, "shutdown-timeout", shutdownTO, "shutdown timeout")
	fs.BoolVar(&help, "h", false, "help")
	fs.BoolVar(&help, "help", false, "help")
	fs.BoolVar(&version, "version", false, "print the version")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the master")
	fs.StringVar(&profileDir, "profile", "", "write CPU and heap profiles of every context to this directory")
	fs.StringVar(&sshTr, "ssh-transport", "", "the default ssh transport")
	fan.register(fs, cmd == "exec")
	fs.BoolVar(&checkMode, "check", false, "check mode")
	fs.BoolVar(&showDiff, "diff", false, "print the diffs of operations")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "mitostar: %s\n\n%s", asTyped(err, args), usage)
		return 2
	}
	var pattern string
	if cmd == "exec" {
		// Flags may also follow the pattern, as in `ansible web -b -a CMD`:
		// `mitostar exec web -b -- CMD`.
		if rest := fs.Args(); len(rest) > 1 && rest[0] != "--" && strings.HasPrefix(rest[1], "-") && rest[1] != "--" {
			pattern = rest[0]
			if err := fs.Parse(rest[1:]); err != nil {
				fmt.Fprintf(stderr, "mitostar: %s\n\n%s", asTyped(err, rest[1:]), usage)
				return 2
			}
		}
	}
	if help {
		return write(stdout, stderr, usage)
	}
	if version {
		return printVersion(stdout, stderr)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	rest := fs.Args()
	var script string
	var argv, command []string
	if cmd == "exec" {
		if pattern == "" {
			if len(rest) > 0 && rest[0] != "--" {
				pattern, rest = rest[0], rest[1:]
			}
			if len(rest) > 0 && rest[0] == "--" {
				rest = rest[1:]
			}
		}
		if pattern == "" || len(rest) == 0 {
			fmt.Fprintf(stderr, "mitostar exec: want a host pattern and a command: mitostar exec PATTERN -- CMD [ARG...]\n\n%s", usage)
			return 2
		}
		command = rest
	} else if cmd == "repl" {
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "mitostar repl: takes no script or argument, got %q\n\n%s", rest[0], usage)
			return 2
		}
	} else if bundled != nil {
		script, argv = bundled.Script, rest
		roots = append(append(multiFlag(nil), bundled.Roots...), roots...)
		fan.defaultInventory = bundled.Inventory
	} else {
		if len(rest) == 0 {
			fmt.Fprintf(stderr, "mitostar: missing script\n\n%s", usage)
			return 2
		}
		script, argv = rest[0], rest[1:]
	}
	level, err := core.ParseLevel(logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "mitostar: --log-level: %v\n", err)
		return 2
	}
	if env := os.Getenv("MITOSTAR_LOG_LEVEL"); env != "" {
		envLevel, err := core.ParseLevel(env)
		if err != nil {
			fmt.Fprintf(stderr, "mitostar: MITOSTAR_LOG_LEVEL: %v\n", err)
			return 2
		}
		if !set["log-level"] { // a flag on the command line beats the environment
			level = envLevel
		}
	}
	if verbose {
		level = slog.LevelDebug
	}
	if maxSize < core.MinMaxMessageSize {
		fmt.Fprintf(stderr, "mitostar: --max-message-size must be at least %d bytes\n", core.MinMaxMessageSize)
		return 2
	}
	switch sshTr {
	case "", "openssh", "native":
	default:
		fmt.Fprintf(stderr, "mitostar: --ssh-transport must be openssh or native, got %q\n", sshTr)
		return 2
	}
	if shutdownTO < 0 {
		fmt.Fprintf(stderr, "mitostar: --shutdown-timeout must not be negative\n")
		return 2
	}
	if script != "" {
		if err := runtime.CheckScript(script); err != nil {
			fmt.Fprintf(stderr, "mitostar: %v\n", err)
			return 2
		}
	}
	if !checkRoots(stderr, "mitostar", roots) {
		return 2
	}
	var ed *repl.REPL
	if cmd == "repl" {
		// Output goes through the line editor, which keeps the prompt
		// below what is printed while it waits.
		if ed, err = repl.New(repl.Options{Stdout: stdout, Stderr: stderr, HistoryFile: repl.DefaultHistoryFile()}); err != nil {
			fmt.Fprintf(stderr, "mitostar repl: %v\n", err)
			return 1
		}
		defer ed.Close()
		stdout, stderr = ed.Stdout(), ed.Stderr()
		// Modules load from the working directory, then each -I.
		roots = append(multiFlag{"."}, roots...)
	}
	fo, err := fan.open(stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mitostar: %v\n", err)
		return 2
	}
	defer fo.close()
	stdout, stderr = fo.stdout, fo.stderr
	logOut := stderr
	if logFile != "" {
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(stderr, "mitostar: --log-file: %v\n", err)
			return 2
		}
		defer f.Close()
		logOut = f
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "mitostar: --cpuprofile: %v\n", err)
			return 2
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	if profileDir != "" {
		if err := os.MkdirAll(profileDir, 0o755); err != nil {
			fmt.Fprintf(stderr, "mitostar: --profile: %v\n", err)
			return 2
		}
		os.Setenv(core.ProfileDirEnv, profileDir)
		defer core.StartProfiles(profileDir, "master")()
	}
	sink := core.NewWriterSink(logOut)
	opts := core.Options{Sink: sink, MaxMessageSize: maxSize, LogLevel: level}
	r := core.NewMaster(opts)
	if verbose {
		r.EnableDebug()
		r.SetLogger(slog.New(core.NewLogHandler(r)))
	}
	session := fanout.NewSession(r, fo.options)
	rt := runtime.New(r, runtime.Options{Roots: roots, Argv: argv, Stdout: stdout, Predeclared: fanout.Predeclared(session),
		CheckMode: checkMode, Diff: showDiff, SSHTransport: sshTr})
	if ed != nil {
		return runREPL(ed, rt, time.Duration(shutdownTO*float64(time.Second)), stderr)
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var got os.Signal
	done := make(chan error, 1)
	go func() {
		if cmd == "exec" {
			done <- runExec(ctx, session, pattern, command, fo, stdout)
			return
		}
		done <- rt.RunScript(ctx, script)
	}()
	var runErr error
	select {
	case runErr = <-done:
	case got = <-sigs:
		cancel(fmt.Errorf("interrupted by %s", got))
		select {
		case runErr = <-done:
		case <-time.After(time.Duration(shutdownTO * float64(time.Second))):
		}
	}
	fo.progressEnd()
	rt.Close(time.Duration(shutdownTO * float64(time.Second)))
	switch got {
	case syscall.SIGINT:
		return 130
	case syscall.SIGTERM:
		return 143
	}
	if runErr != nil {
		fmt.Fprint(stderr, builtins.Backtrace(runErr))
	}
	if session.Used() {
		session.Recap(fo.stderr, fo.color)
		session.WriteRecapJSON()
	}
	if err := session.JSONError(); err != nil {
		fmt.Fprintf(stderr, "mitostar: --json: %v\n", err)
	}
	if runErr != nil {
		return 1
	}
	return session.ExitStatus()
}

// printVersion prints the version line: mitostar, protocol, Go, platform.
func printVersion(stdout, stderr io.Writer) int {
	return write(stdout, stderr, fmt.Sprintf("mitostar %s (protocol %d, %s %s/%s)\n", core.BuildVersion, core.ProtocolVersion,
		goruntime.Version(), goruntime.GOOS, goruntime.GOARCH))
}

// write writes text to stdout; a failed write (a full disk, a closed
// pipe) is reported and makes the exit status 1.
func write(stdout, stderr io.Writer, text string) int {
	if _, err := io.WriteString(stdout, text); err != nil {
		fmt.Fprintf(stderr, "mitostar: writing to stdout: %v\n", err)
		return 1
	}
	return 0
}

// flagInError finds the flag name in the flag package's errors, which
// always spell it with one dash.
var flagInError = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(defined: |argument: |for flag |for |flag )-([^\s:=]+)`)
})

// asTyped returns err's message with the flag named as the user typed
// it: "--check", not the flag package's "-check".
func asTyped(err error, args []string) string {
	return flagInError().ReplaceAllStringFunc(err.Error(), func(m string) string {
		sub := flagInError().FindStringSubmatch(m)
		name := sub[2]
		for _, a := range args {
			if a == "--" {
				break
			}
			if a == "--"+name || strings.HasPrefix(a, "--"+name+"=") {
				return sub[1] + "--" + name
			}
		}
		return m
	})
}

// doc prints the reference, or the entry or section of NAME.
func doc(stdout, stderr io.Writer, args []string) int {
	if len(args) == 0 {
		return write(stdout, stderr, docs.Reference)
	}
	name := strings.Join(args, " ")
	text, ok := docs.Lookup(docs.Reference, name)
	if !ok {
		fmt.Fprintf(stderr, "mitostar doc: nothing is named %q in the reference", name)
		if near := docs.Near(docs.Reference, name); len(near) > 0 {
			fmt.Fprintf(stderr, "; entries that start alike: %s", strings.Join(near, ", "))
		}
		fmt.Fprintln(stderr)
		return 1
	}
	return write(stdout, stderr, text)
}
