// Command mitostar runs a Starlark script that starts child contexts
// (local processes, over ssh, through sudo, into containers) and calls
// functions in them. The same binary is every child.
//
// Usage:
//
//	mitostar [flags] SCRIPT.star [ARG...]
//	mitostar run [flags] SCRIPT.star [ARG...]
//	mitostar version
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
	goruntime "runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/runtime"
)

const usage = `usage: mitostar [flags] SCRIPT.star [ARG...]
       mitostar run [flags] SCRIPT.star [ARG...]
       mitostar version
       mitostar help

Runs SCRIPT.star: its top level, then main() if it defines one. ARGs are
available to the script (in every context) as argv.

flags:
  -I DIR                  add a module root (repeatable); the script's
                          directory is always the first one
  -v                      debug logging (the master's own log too)
  --log-level LEVEL       debug, info (default), warning or error
  --log-file FILE         write logs there instead of stderr
  --max-message-size N    largest message payload in bytes (default 134217728)
  --shutdown-timeout SEC  how long to wait for contexts to exit (default 5)
  --ssh-transport T       openssh (default: the system's ssh program) or
                          native (SSH in mitostar itself) for ssh
                          connections that do not choose with transport=
  --profile DIR           write CPU and heap profiles of the master and of
                          every local child to DIR (for benchmarks)
  -h, --help              this help

exit status: 0 success, 1 the script failed, 2 bad usage,
130/143 interrupted by SIGINT/SIGTERM.
`

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	core.RunRole()
	// A master mostly waits on pipes; on small machines waking idle Ps
	// costs more than it buys (see docs/benchmarks.md).
	if os.Getenv("GOMAXPROCS") == "" {
		goruntime.GOMAXPROCS(1)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintf(stdout, "mitostar %s (protocol %d, %s %s/%s)\n", core.BuildVersion, core.ProtocolVersion,
				goruntime.Version(), goruntime.GOOS, goruntime.GOARCH)
			return 0
		case "help":
			io.WriteString(stdout, usage)
			return 0
		case "run":
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
		cpuProfile string
		profileDir string
		sshTr      string
	)
	fs.Var(&roots, "I", "module root")
	fs.BoolVar(&verbose, "v", false, "debug logging")
	fs.StringVar(&logLevel, "log-level", logLevel, "log level")
	fs.StringVar(&logFile, "log-file", "", "log file")
	fs.IntVar(&maxSize, "max-message-size", maxSize, "max message size")
	fs.Float64Var(&shutdownTO, "shutdown-timeout", shutdownTO, "shutdown timeout")
	fs.BoolVar(&help, "h", false, "help")
	fs.BoolVar(&help, "help", false, "help")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the master")
	fs.StringVar(&profileDir, "profile", "", "write CPU and heap profiles of every context to this directory")
	fs.StringVar(&sshTr, "ssh-transport", "", "the default ssh transport")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "mitostar: %v\n\n%s", err, usage)
		return 2
	}
	if help {
		io.WriteString(stdout, usage)
		return 0
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprintf(stderr, "mitostar: missing script\n\n%s", usage)
		return 2
	}
	script, argv := rest[0], rest[1:]
	level, err := core.ParseLevel(logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "mitostar: --log-level: %v\n", err)
		return 2
	}
	if env := os.Getenv("MITOSTAR_LOG_LEVEL"); env != "" {
		if level, err = core.ParseLevel(env); err != nil {
			fmt.Fprintf(stderr, "mitostar: MITOSTAR_LOG_LEVEL: %v\n", err)
			return 2
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
	if _, err := os.Stat(script); err != nil {
		fmt.Fprintf(stderr, "mitostar: %v\n", err)
		return 2
	}
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

	if profileDir == "" {
		// Heap profiles are only written with --profile; without one,
		// sampling allocations is cost for nothing.
		goruntime.MemProfileRate = 0
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
	rt := runtime.New(r, runtime.Options{Roots: roots, Argv: argv, Stdout: stdout, SSHTransport: sshTr})

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var got os.Signal
	done := make(chan error, 1)
	go func() { done <- rt.RunScript(ctx, script) }()
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
	r.CloseTimeout(time.Duration(shutdownTO * float64(time.Second)))
	switch got {
	case syscall.SIGINT:
		return 130
	case syscall.SIGTERM:
		return 143
	}
	if runErr != nil {
		fmt.Fprint(stderr, builtins.Backtrace(runErr))
		return 1
	}
	return 0
}
