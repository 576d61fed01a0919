package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"strings"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/bundle"
	"github.com/mitostar/mitostar/check"
	"github.com/mitostar/mitostar/connect"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/docs"
	"github.com/mitostar/mitostar/inventory"
	"github.com/mitostar/mitostar/runtime"
)

// checkRoots checks -I directories: each must be an existing directory.
func checkRoots(stderr io.Writer, cmd string, roots []string) bool {
	for _, root := range roots {
		if fi, err := os.Stat(root); err != nil {
			fmt.Fprintf(stderr, "%s: -I %s: %v\n", cmd, root, errors.Unwrap(err))
			return false
		} else if !fi.IsDir() {
			fmt.Fprintf(stderr, "%s: -I %s: not a directory\n", cmd, root)
			return false
		}
	}
	return true
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

// parseInterleaved parses flags placed before, between and after the
// positional arguments (mitostar bundle SCRIPT.star -o FILE) and returns
// the positional ones; "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// runBundle is mitostar bundle: check the script, then write one
// executable holding a mitostar binary for the target, the script, its
// modules and files, and the inventory given with -i.
func runBundle(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mitostar bundle", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var roots, inventories multiFlag
	var out, target string
	fs.Var(&roots, "I", "module root")
	fs.Var(&inventories, "i", "inventory source")
	fs.Var(&inventories, "inventory", "inventory source")
	fs.StringVar(&out, "o", "", "output file")
	fs.StringVar(&target, "target", goruntime.GOOS+"/"+goruntime.GOARCH, "OS/ARCH")
	positional, err := parseInterleaved(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "mitostar bundle: %s\n\n%s", asTyped(err, args), usage)
		return 2
	}
	const want = "mitostar bundle SCRIPT.star -o FILE [--target OS/ARCH] [-i INVENTORY] [-I DIR]"
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "mitostar bundle: want one script: %s\n\n%s", want, usage)
		return 2
	}
	if out == "" {
		fmt.Fprintf(stderr, "mitostar bundle: want the output file: %s\n\n%s", want, usage)
		return 2
	}
	goos, goarch, ok := strings.Cut(target, "/")
	if !ok || goos == "" || goarch == "" || strings.Contains(goarch, "/") {
		fmt.Fprintf(stderr, "mitostar bundle: --target must be OS/ARCH (linux/arm64), got %q\n", target)
		return 2
	}
	if !checkRoots(stderr, "mitostar bundle", roots) {
		return 2
	}
	if len(inventories) > 0 {
		if _, err := inventory.Load(inventories...); err != nil {
			fmt.Fprintf(stderr, "mitostar bundle: %v\n", err)
			return 2
		}
	}
	script := positional[0]
	res, err := check.Script(script, checkOptions(roots))
	if err != nil {
		fmt.Fprintf(stderr, "mitostar bundle: %v\n", err)
		return 2
	}
	if len(res.Problems) > 0 {
		for _, p := range res.Problems {
			fmt.Fprintln(stderr, p)
		}
		fmt.Fprintf(stderr, "mitostar bundle: %s has %d %s (see mitostar check): not bundled\n", script, len(res.Problems), plural(len(res.Problems), "problem"))
		return 1
	}
	bin, err := connect.DistBinary(goos, goarch)
	if err != nil {
		fmt.Fprintf(stderr, "mitostar bundle: %v\n", err)
		return 1
	}
	spec := bundle.Spec{Binary: bin, Target: target, Checked: res, Inventory: inventories}
	if err := bundle.Write(out, spec); err != nil {
		fmt.Fprintf(stderr, "mitostar bundle: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s for %s with %d %s, %d other %s and %d inventory %s\n", out, script, target,
		len(res.Modules), plural(len(res.Modules), "module"), len(res.Files), plural(len(res.Files), "file"),
		len(inventories), plural(len(inventories), "source"))
	return 0
}

// runBundled runs the script of the bundle this executable is, with
// args as the flags and arguments of a run: its files are extracted to
// a private temporary directory, removed when the run ends.
func runBundled(b *bundle.Bundle, args []string, stdout, stderr io.Writer) int {
	defer b.Close()
	dir, err := os.MkdirTemp("", "mitostar-bundle-")
	if err != nil {
		fmt.Fprintf(stderr, "mitostar: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	x, err := b.Extract(dir)
	if err != nil {
		fmt.Fprintf(stderr, "mitostar: %v\n", err)
		return 1
	}
	return run(args, stdout, stderr, x)
}
