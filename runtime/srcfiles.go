package runtime

// Files that operations read from the module roots (the src= of
// ops.file and ops.template) travel like modules: the same sandbox
// rules in the master, the same blobs and LOAD_MODULE chunks (of kind
// kindSrc), cached in every context by path and sha256, and never read
// from a child's own disk.
//
// A src= written as a string literal in a module travels with that
// module, so the call that first needs it costs no extra round trip; so
// does the src= of a direct ctx.call(ops.template, ...). Any other src
// is fetched on demand: the child calls its parent's srcService, which
// pushes the file as LOAD_MODULE chunks (fetching it from its own
// parent first if needed) and then replies.

import (
	"context"
	"errors"
	"fmt"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/ops"
)

// srcFile is a file under a module root known to this context.
type srcFile struct {
	path, sha string
	data      []byte
}

// srcService serves src files to immediate children.
const (
	srcService = "mitostar.src"
	srcGet     = "get"
)

func (rt *Runtime) registerSrcService() {
	err := rt.r.RegisterService(&core.Service{
		Name: srcService,
		Methods: map[string]core.ServiceMethod{
			srcGet: {Policy: rt.r.IsImmediateChild, Fn: rt.serveSrc},
		},
	})
	if err != nil {
		rt.r.Logger().Error("registering the src service", "err", err)
	}
}

// serveSrc pushes the src file a child asks for, then replies with its
// sha256.
func (rt *Runtime) serveSrc(ctx context.Context, call *core.ServiceCall) (any, error) {
	var kw struct {
		Path string `cbor:"path"`
	}
	if err := call.Kwargs(&kw); err != nil {
		return nil, err
	}
	f, err := rt.srcSource(ctx, kw.Path)
	if err != nil {
		return nil, err
	}
	blob := moduleBlob{Path: f.path, SHA256: f.sha, Source: f.data, Kind: kindSrc}
	if err := rt.pushModules(ctx, call.Caller(), []moduleBlob{blob}); err != nil {
		return nil, err
	}
	return f.sha, nil
}

// addSrc records a src file received from elsewhere after checking its
// hash; one already known under the same path must be identical.
func (rt *Runtime) addSrc(b moduleBlob) (*srcFile, error) {
	if got := sha256Hex(b.Source); got != b.SHA256 {
		return nil, fmt.Errorf("src %q: sha256 mismatch (got %s, announced %s)", b.Path, got, b.SHA256)
	}
	clean, err := cleanRootPath("src", b.Path)
	if err != nil {
		return nil, err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if f, ok := rt.srcs[clean]; ok {
		if f.sha != b.SHA256 {
			return nil, fmt.Errorf("src %q: this context already has a different version (sha256 %s, not %s)", clean, f.sha, b.SHA256)
		}
		return f, nil
	}
	f := &srcFile{path: clean, sha: b.SHA256, data: b.Source}
	rt.srcs[clean] = f
	return f, nil
}

// addAny records a module or a src file.
func (rt *Runtime) addAny(b moduleBlob) (any, error) {
	switch b.Kind {
	case kindModule:
		return rt.addBlob(b)
	case kindSrc:
		return rt.addSrc(b)
	}
	return nil, fmt.Errorf("%q: unknown kind %d of module blob", b.Path, b.Kind)
}

// srcCached returns src file p if this context has it, reading it from
// the module roots in the master; a child does not ask its parent.
func (rt *Runtime) srcCached(p string) (*srcFile, error) {
	clean, err := cleanRootPath("src", p)
	if err != nil {
		return nil, err
	}
	rt.mu.Lock()
	f, ok := rt.srcs[clean]
	rt.mu.Unlock()
	if ok || !rt.r.IsMaster() {
		return f, nil
	}
	data, err := readFromRoots(rt.opts.Roots, "src", clean)
	if err != nil {
		return nil, err
	}
	return rt.addSrc(moduleBlob{Path: clean, SHA256: sha256Hex(data), Source: data, Kind: kindSrc})
}

// srcSource returns src file p: from the cache, the module roots (in
// the master) or the parent.
func (rt *Runtime) srcSource(ctx context.Context, p string) (*srcFile, error) {
	f, err := rt.srcCached(p)
	if err != nil || f != nil {
		return f, err
	}
	clean, _ := cleanRootPath("src", p)
	pid, _ := rt.r.ParentID()
	var sha string
	if err := rt.r.ContextByID(pid).CallService(ctx, &sha, srcService, srcGet, map[string]any{"path": clean}); err != nil {
		var refused *core.RemoteError
		if errors.As(err, &refused) && refused.Kind == core.CallError {
			// The master's own words: not found, or outside a root.
			return nil, errors.New(refused.Message)
		}
		return nil, fmt.Errorf("src %q: %w", clean, err)
	}
	rt.mu.Lock()
	f = rt.srcs[clean]
	rt.mu.Unlock()
	if f == nil || f.sha != sha {
		return nil, fmt.Errorf("src %q: the parent did not send it", clean)
	}
	return f, nil
}

// srcBlobs returns the src files of mods that this context has (or, in
// the master, can read) and that target lacks, and marks them as sent.
// A src that cannot be read is left out: the operation that names it
// reports the error if it runs.
func (rt *Runtime) srcBlobs(target uint32, paths []string) []moduleBlob {
	var blobs []moduleBlob
	for _, p := range paths {
		f, err := rt.srcCached(p)
		if err != nil || f == nil {
			continue
		}
		key := moduleID{path: f.path, sha: f.sha, kind: kindSrc}
		rt.mu.Lock()
		sent := rt.sent[target]
		if sent == nil {
			sent = map[moduleID]bool{}
			rt.sent[target] = sent
		}
		if !sent[key] {
			sent[key] = true
			blobs = append(blobs, moduleBlob{Path: f.path, SHA256: f.sha, Source: f.data, Kind: kindSrc})
		}
		rt.mu.Unlock()
	}
	return blobs
}

// builtinSrc returns the src= string of a direct call of ops.file or
// ops.template, "" for any other call.
func builtinSrc(name string, args starlark.Tuple, kwargs []starlark.Tuple) string {
	member, ok := cutOps(name)
	if !ok {
		return ""
	}
	pos, ok := ops.SrcParam(member)
	if !ok {
		return ""
	}
	if pos < len(args) {
		s, _ := args[pos].(starlark.String)
		return string(s)
	}
	for _, kv := range kwargs {
		if k, _ := kv[0].(starlark.String); k == "src" {
			s, _ := kv[1].(starlark.String)
			return string(s)
		}
	}
	return ""
}

func cutOps(name string) (string, bool) {
	const prefix = "ops."
	if len(name) > len(prefix) && name[:len(prefix)] == prefix {
		return name[len(prefix):], true
	}
	return "", false
}

// literalSrcs finds the src= files that a module's calls of ops.file and
// ops.template name as string literals.
func literalSrcs(f *syntax.File) []string {
	var out []string
	seen := map[string]bool{}
	syntax.Walk(f, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok {
			return true
		}
		dot, ok := call.Fn.(*syntax.DotExpr)
		if !ok {
			return true
		}
		if x, ok := dot.X.(*syntax.Ident); !ok || x.Name != "ops" {
			return true
		}
		pos, ok := ops.SrcParam(dot.Name.Name)
		if !ok {
			return true
		}
		var arg syntax.Expr
		positional := 0
		for _, a := range call.Args {
			if b, ok := a.(*syntax.BinaryExpr); ok && b.Op == syntax.EQ {
				if k, ok := b.X.(*syntax.Ident); ok && k.Name == "src" {
					arg = b.Y
				}
				continue
			}
			if positional == pos {
				arg = a
			}
			positional++
		}
		if lit, ok := arg.(*syntax.Literal); ok && lit.Token == syntax.STRING {
			if s, ok := lit.Value.(string); ok && !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
		return true
	})
	return out
}
