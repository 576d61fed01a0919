package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/check"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/docs"
	"github.com/mitostar/mitostar/runtime"
)

// checkRoots checks -I directories: each must be an existing directory.
func checkRoots(stderr io.Writer, cmd string, roots []string) bool {
	for _, root := range roots {
		if fi, err := os.Stat(root); err != nil {
			fmt.Fprintf(stderr, "%s: -I %s: %v\n", cmd, root, unwrapPath(err))
			return false
		} else if !fi.IsDir() {
			fmt.Fprintf(stderr, "%s: -I %s: not a directory\n", cmd, root)
			return false
		}
	}
	return true
}

// unwrapPath drops the path an *os.PathError repeats.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// predeclared returns the names a master's modules see, from a master
// router that starts no context and is closed at once.
func predeclared() starlark.StringDict {
	r := core.NewMaster(core.Options{Sink: core.NewWriterSink(io.Discard)})
	defer r.Close()
	return runtime.New(r, runtime.Options{}).Predeclared()
}

// checkOptions are the options of a check with module roots roots.
func checkOptions(roots []string) check.Options {
	return check.Options{
		Roots:       roots,
		Predeclared: predeclared(),
		Signatures:  func(name string) (string, bool) { return docs.Signature(docs.Reference, name) },
	}
}

// runCheck is mitostar check: every problem as file:line: message, exit
// status 1 if there is one.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mitostar check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var roots multiFlag
	fs.Var(&roots, "I", "module root")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "mitostar check: %s\n\n%s", asTyped(err, args), usage)
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "mitostar check: want one script: mitostar check [-I DIR] SCRIPT.star\n\n%s", usage)
		return 2
	}
	if !checkRoots(stderr, "mitostar check", roots) {
		return 2
	}
	res, err := check.Script(fs.Arg(0), checkOptions(roots))
	if err != nil {
		fmt.Fprintf(stderr, "mitostar check: %v\n", err)
		return 2
	}
	for _, p := range res.Problems {
		fmt.Fprintln(stdout, p)
	}
	if len(res.Problems) > 0 {
		fmt.Fprintf(stderr, "mitostar check: %d %s\n", len(res.Problems), plural(len(res.Problems), "problem"))
		return 1
	}
	return 0
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
