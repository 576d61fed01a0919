package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/mitostar/mitostar/core"
)

// FileOptions is mitostar's Starlark dialect (docs/reference.md, "Scripts
// and modules"): scripts are
// programs, not configuration.
var FileOptions = &syntax.FileOptions{
	Set: true, While: true, TopLevelControl: true, GlobalReassign: true, Recursion: true,
}

// moduleBlob is a module as it travels: in LOAD_MODULE, in a call's Ext,
// in the reply to GET_MODULE and in a fork's handshake; a CBOR array of
// path, sha256, source, kind, program and srcs. Kind kindSrc marks a file
// that operations read (src=), which travels the same way but is never
// executed.
//
// A module with its source also carries the program its sender compiled
// from it and the src files its operations name (literalSrcs), so that
// the receiver runs that program instead of compiling the source again:
// every context of a tree runs the same binary, and compiling is most of
// what a new context spends on its first call.
type moduleBlob struct {
	_       struct{} `cbor:",toarray"`
	Path    string
	SHA256  string
	Source  []byte
	Kind    int
	Program []byte   // starlark.Program.Write of the source; may be absent
	Srcs    []string // with Program: the module's literal src files
}

// Kinds of moduleBlob.
const (
	kindModule = 0 // a Starlark module
	kindSrc    = 1 // a file read by ops.file and ops.template (src=)
)

// encodeModuleBlobs returns the CBOR of blobs.
func encodeModuleBlobs(blobs []moduleBlob) []byte {
	data, err := core.Marshal(blobs)
	if err != nil {
		panic(fmt.Sprintf("encoding modules: %v", err)) // strings and bytes always encode
	}
	return data
}

// decodeModuleBlobs reads what encodeModuleBlobs writes.
func decodeModuleBlobs(data []byte) ([]moduleBlob, error) {
	var blobs []moduleBlob
	err := core.Unmarshal(data, &blobs)
	return blobs, err
}

// moduleChunkSize bounds the module bytes in one LOAD_MODULE message, so
// that it fits any max_message_size of at least core.MinMaxMessageSize
// (4 KiB) with room for its header.
const moduleChunkSize = 3 << 10

// moduleChunk is the payload of LOAD_MODULE: part of one module's blob
// (the CBOR of its moduleBlob). A parent sends a module's chunks in
// order; the receiver decodes the blob and checks the sha256 of its
// source once it has Total bytes.
type moduleChunk struct {
	Path   string `cbor:"1,keyasint"`
	SHA256 string `cbor:"2,keyasint"`
	Offset int    `cbor:"3,keyasint"`
	Total  int    `cbor:"4,keyasint"`
	Data   []byte `cbor:"5,keyasint"`
	Kind   int    `cbor:"6,keyasint,omitempty"` // kindModule or kindSrc
}

// maxModuleSize bounds a script or module: what the master reads from
// its module roots.
const maxModuleSize = 64 << 20

// maxBlobSize bounds what a LOAD_MODULE sequence may announce: a module
// of maxModuleSize with its path, hash and the framing of its blob. Its
// program rides along only when source and program fit in maxModuleSize.
const maxBlobSize = maxModuleSize + 64<<10

// module is one Starlark module known to this context.
type module struct {
	path  string // root-relative, slash-separated: its identity with sha
	sha   string
	src   []byte
	prog  *starlark.Program
	loads []string // paths this module loads
	srcs  []string // src= files its operations name as string literals

	encodeOnce sync.Once
	encoded    []byte // prog.Write: what blob sends, made at the first send

	once    sync.Once
	globals starlark.StringDict
	err     error
}

// A moduleID is a module's identity: its path and the sha256 of its
// source (and, for a src file, kindSrc).
type moduleID struct {
	path, sha string
	kind      int
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// CleanModulePath checks a load path against the sandbox rules: relative,
// no "..", no empty components. It returns the clean slash form.
func CleanModulePath(p string) (string, error) { return cleanRootPath("module", p) }

// cleanRootPath is CleanModulePath for a path of kind "module" or "src".
func cleanRootPath(kind, p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("empty %s path", kind)
	}
	if strings.HasPrefix(p, "/") || filepath.IsAbs(p) {
		return "", fmt.Errorf("%s path %q is absolute: %s paths are relative to a module root", kind, p, kind)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("%s path %q escapes its module root (\"..\")", kind, p)
		}
	}
	c := path.Clean(p)
	if c == "." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%s path %q is not a file under a module root", kind, p)
	}
	return c, nil
}

// readFromRoots finds p, a path of kind "module" or "src", in the module
// roots, refusing symlinks that resolve outside the root they were found
// in.
func readFromRoots(roots []string, kind, p string) ([]byte, error) {
	_, src, err := findInRoots(roots, kind, p)
	return src, err
}

// FindModule finds module p in the module roots as load() does and
// returns the file it was read from (the root joined with p) and its
// source; a symlink that resolves outside its root is refused. mitostar
// check and bundle read modules with it, without starting a context.
func FindModule(roots []string, p string) (file string, src []byte, err error) {
	return findInRoots(roots, "module", p)
}

func findInRoots(roots []string, kind, p string) (file string, src []byte, err error) {
	clean, err := cleanRootPath(kind, p)
	if err != nil {
		return "", nil, err
	}
	for _, root := range roots {
		realRoot, err := filepath.EvalSymlinks(root)
		if err != nil {
			continue
		}
		full := filepath.Join(root, filepath.FromSlash(clean))
		real, err := filepath.EvalSymlinks(full)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return "", nil, fmt.Errorf("%s %q: %w", kind, p, err)
		}
		rel, err := filepath.Rel(realRoot, real)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return "", nil, fmt.Errorf("%s %q resolves outside its module root %s (symlink to %s)", kind, p, root, real)
		}
		src, err := readModuleFile(kind, p, real)
		return full, src, err
	}
	return "", nil, fmt.Errorf("%s %q not found in the module roots (%s)", kind, p, strings.Join(roots, ", "))
}

// readModuleFile reads module p from the file real: a regular file of at
// most maxModuleSize bytes (a device such as /dev/zero never ends, a
// FIFO may never answer).
func readModuleFile(kind, p, real string) ([]byte, error) {
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", kind, p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", kind, p, err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s %q is %s, not a file", kind, p, fileKind(fi.Mode()))
	case fi.Size() > maxModuleSize:
		return nil, fmt.Errorf("%s %q is %d bytes, over the %d MiB limit of a script, module or file", kind, p, fi.Size(), maxModuleSize>>20)
	}
	// The size limit holds even for a file that grows while read.
	src, err := io.ReadAll(io.LimitReader(f, maxModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", kind, p, err)
	}
	if len(src) > maxModuleSize {
		return nil, fmt.Errorf("%s %q is over the %d MiB limit of a script, module or file", kind, p, maxModuleSize>>20)
	}
	return src, nil
}

// CheckScript says why script cannot be run: it must be an existing
// regular file of at most the size limit of a module (the command line
// treats a directory or a device as bad input, as it does a missing
// file).
func CheckScript(script string) error {
	fi, err := os.Stat(script)
	switch {
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is %s, not a script", script, fileKind(fi.Mode()))
	case fi.Size() > maxModuleSize:
		return fmt.Errorf("%s is %d bytes, over the %d MiB limit of a script or module", script, fi.Size(), maxModuleSize>>20)
	}
	return nil
}

// fileKind names the type of a file that is not a regular one.
func fileKind(m fs.FileMode) string {
	switch t := m.Type(); {
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeCharDevice != 0:
		return "a character device"
	case t&fs.ModeDevice != 0:
		return "a device"
	case t&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case t&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a regular file"
}

// compile parses a module; its filename is its root-relative path, so
// functions know the module they belong to.
func (rt *Runtime) compile(p, sha string, src []byte) (*module, error) {
	f, prog, err := starlark.SourceProgramOptions(FileOptions, p, src, rt.isPredeclared)
	if err != nil {
		return nil, err
	}
	return newModule(p, sha, src, prog, literalSrcs(f))
}

// compiled returns the module that b's program is, or nil when b has no
// program or it does not decode (then the source is compiled).
func compiled(p string, b moduleBlob) *module {
	if len(b.Program) == 0 {
		return nil
	}
	prog, err := starlark.CompiledProgram(bytes.NewReader(b.Program))
	if err != nil {
		return nil
	}
	m, err := newModule(p, b.SHA256, b.Source, prog, b.Srcs)
	if err != nil {
		return nil
	}
	m.encodeOnce.Do(func() { m.encoded = b.Program })
	return m
}

// blob is the module as it travels, with its compiled program.
func (m *module) blob() moduleBlob {
	m.encodeOnce.Do(func() {
		var buf bytes.Buffer
		if m.prog.Write(&buf) == nil {
			m.encoded = buf.Bytes()
		}
	})
	return moduleBlob{Path: m.path, SHA256: m.sha, Source: m.src, Program: m.encoded, Srcs: m.srcs}
}

// newModule is module p compiled into prog, with the paths it loads.
func newModule(p, sha string, src []byte, prog *starlark.Program, srcs []string) (*module, error) {
	m := &module{path: p, sha: sha, src: src, prog: prog, srcs: srcs}
	for i := 0; i < prog.NumLoads(); i++ {
		l, _ := prog.Load(i)
		clean, err := CleanModulePath(l)
		if err != nil {
			return nil, fmt.Errorf("%s: load: %w", p, err)
		}
		m.loads = append(m.loads, clean)
	}
	return m, nil
}

// addBlob records a module received from elsewhere after checking its
// hash. A module already known under the same path must be identical.
// A blob without source names a module of this child's module cache; if
// the cache no longer holds it, it is asked of the parent.
func (rt *Runtime) addBlob(b moduleBlob) (*module, error) {
	if b.Source == nil {
		return rt.addCached(b)
	}
	if got := sha256Hex(b.Source); got != b.SHA256 {
		return nil, fmt.Errorf("module %q: sha256 mismatch (got %s, announced %s)", b.Path, got, b.SHA256)
	}
	clean, err := CleanModulePath(b.Path)
	if err != nil {
		return nil, err
	}
	rt.mu.Lock()
	if m, ok := rt.modules[clean]; ok {
		rt.mu.Unlock()
		if m.sha != b.SHA256 {
			return nil, fmt.Errorf("module %q: this context already has a different version (sha256 %s, not %s)", clean, m.sha, b.SHA256)
		}
		return m, nil
	}
	rt.mu.Unlock()
	m := compiled(clean, b)
	if m == nil {
		if m, err = rt.compile(clean, b.SHA256, b.Source); err != nil {
			return nil, err
		}
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if old, ok := rt.modules[clean]; ok {
		return old, nil
	}
	rt.modules[clean] = m
	if rt.disk != nil {
		rt.r.Go(func() {
			if err := rt.disk.store(m.sha, m.src); err != nil {
				rt.r.Logger().Debug("module cache", "err", err)
			}
		})
	}
	return m, nil
}

// addCached adds a module named without its source, from this child's
// module cache or else from the parent.
func (rt *Runtime) addCached(b moduleBlob) (*module, error) {
	clean, err := CleanModulePath(b.Path)
	if err != nil {
		return nil, err
	}
	rt.mu.Lock()
	m, ok := rt.modules[clean]
	rt.mu.Unlock()
	if ok && m.sha == b.SHA256 {
		return m, nil
	}
	if rt.disk != nil {
		if src, ok := rt.disk.load(b.SHA256); ok {
			return rt.addBlob(moduleBlob{Path: clean, SHA256: b.SHA256, Source: src})
		}
	}
	m, err = rt.moduleSource(clean)
	if err != nil {
		return nil, err
	}
	if m.sha != b.SHA256 {
		return nil, fmt.Errorf("module %q: the parent sent sha256 %s, the call names %s", clean, m.sha, b.SHA256)
	}
	return m, nil
}

// moduleSource returns module p: from the cache, from the module roots
// in the master, or asked of the parent (GET_MODULE) elsewhere; children
// never read modules from their own disk by path (only the module cache,
// by sha256: addCached).
func (rt *Runtime) moduleSource(p string) (*module, error) {
	clean, err := CleanModulePath(p)
	if err != nil {
		return nil, err
	}
	rt.mu.Lock()
	m, ok := rt.modules[clean]
	rt.mu.Unlock()
	if ok {
		return m, nil
	}
	if rt.r.IsMaster() {
		src, err := readFromRoots(rt.opts.Roots, "module", clean)
		if err != nil {
			return nil, err
		}
		m, err := rt.compile(clean, sha256Hex(src), src)
		if err != nil {
			return nil, err
		}
		rt.mu.Lock()
		defer rt.mu.Unlock()
		if old, ok := rt.modules[clean]; ok {
			return old, nil
		}
		rt.modules[clean] = m
		return m, nil
	}
	blobs, err := rt.fetchFromParent(clean)
	if err != nil {
		return nil, err
	}
	for _, b := range blobs {
		if _, err := rt.addBlob(b); err != nil {
			return nil, err
		}
	}
	rt.mu.Lock()
	m, ok = rt.modules[clean]
	rt.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("module %q: the parent did not send it", clean)
	}
	return m, nil
}

// fetchFromParent asks the parent for module p: the parent pushes it and
// its transitive loads as LOAD_MODULE chunks, then replies; the chunks are
// stored by onLoadModule before the reply arrives (one stream, in order).
func (rt *Runtime) fetchFromParent(p string) ([]moduleBlob, error) {
	pid, _ := rt.r.ParentID()
	data, err := core.Marshal(core.GetModuleRequest{Path: p})
	if err != nil {
		return nil, err
	}
	ctx := rt.r.Lifetime()
	reply, err := rt.r.ContextByID(pid).SendAwait(ctx, &core.Message{Handle: core.HandleGetModule, Data: data})
	if err != nil {
		return nil, fmt.Errorf("module %q: %w", p, err)
	}
	var paths []string
	if err := reply.Decode(&paths); err != nil {
		return nil, fmt.Errorf("module %q: %w", p, err)
	}
	return nil, nil
}

// closure returns m and its transitive loads, loads first.
func (rt *Runtime) closure(m *module) ([]*module, error) {
	var out []*module
	seen := map[string]bool{}
	var visit func(m *module) error
	visit = func(m *module) error {
		if seen[m.path] {
			return nil
		}
		seen[m.path] = true
		for _, l := range m.loads {
			dep, err := rt.moduleSource(l)
			if err != nil {
				return fmt.Errorf("%s: load(%q): %w", m.path, l, err)
			}
			if err := visit(dep); err != nil {
				return err
			}
		}
		out = append(out, m)
		return nil
	}
	return out, visit(m)
}

// maxModuleRequests bounds the GET_MODULE requests of one context served
// at once.
const maxModuleRequests = 32

// onGetModule serves a child's GET_MODULE with the module and its
// transitive loads, fetching them from our own parent if needed. It runs
// on its own goroutine: fetching may wait on the parent.
func (rt *Runtime) onGetModule(msg *core.Message) {
	rt.mu.Lock()
	busy := rt.moduleRequests[msg.SrcID] >= maxModuleRequests
	if !busy {
		rt.moduleRequests[msg.SrcID]++
	}
	rt.mu.Unlock()
	if busy {
		// A child that floods requests and stops reading cannot pile up
		// goroutines here.
		now, cancel := context.WithCancel(context.Background())
		cancel() // the reply is queued only if there is room: never wait here
		rt.replyDead(now, msg, fmt.Sprintf("%d module requests of this context are in flight already: refused", maxModuleRequests))
		return
	}
	rt.r.Go(func() {
		defer func() {
			rt.mu.Lock()
			if rt.moduleRequests[msg.SrcID]--; rt.moduleRequests[msg.SrcID] <= 0 {
				delete(rt.moduleRequests, msg.SrcID)
			}
			rt.mu.Unlock()
		}()
		// A child that stops reading gets a minute before it is dropped.
		ctx, cancel := context.WithTimeout(rt.r.Lifetime(), time.Minute)
		defer cancel()
		var req core.GetModuleRequest
		if err := msg.Decode(&req); err != nil {
			rt.replyDead(ctx, msg, "bad GET_MODULE request: "+err.Error())
			return
		}
		m, err := rt.moduleSource(req.Path)
		var mods []*module
		if err == nil {
			mods, err = rt.closure(m)
		}
		if err != nil {
			rt.replyDead(ctx, msg, err.Error())
			return
		}
		blobs := make([]moduleBlob, len(mods))
		paths := make([]string, len(mods))
		for i, m := range mods {
			blobs[i] = m.blob()
			paths[i] = m.path
		}
		if err := rt.pushModules(ctx, rt.r.ContextByID(msg.SrcID), blobs); err != nil {
			rt.replyDead(ctx, msg, err.Error())
			return
		}
		if err := msg.Reply(ctx, paths); err != nil {
			rt.replyDead(ctx, msg, err.Error())
		}
	})
}

// pushModules sends modules to target as LOAD_MODULE chunks; ctx bounds
// the wait for room in a full queue.
func (rt *Runtime) pushModules(ctx context.Context, target *core.Context, blobs []moduleBlob) error {
	for _, b := range blobs {
		if len(b.Source)+len(b.Program) > maxModuleSize {
			b.Program, b.Srcs = nil, nil // the receiver compiles the source
		}
		enc, err := core.Marshal(&b)
		if err != nil {
			return err
		}
		for off := 0; ; off += moduleChunkSize {
			end := min(off+moduleChunkSize, len(enc))
			data, err := core.Marshal(&moduleChunk{Path: b.Path, SHA256: b.SHA256, Offset: off, Total: len(enc), Data: enc[off:end], Kind: b.Kind})
			if err != nil {
				return err
			}
			if err := target.Send(ctx, &core.Message{Handle: core.HandleLoadModule, Data: data}); err != nil {
				return err // the same error the call itself would meet
			}
			if end == len(enc) {
				break
			}
		}
	}
	return nil
}

func (rt *Runtime) replyDead(ctx context.Context, msg *core.Message, reason string) {
	data, _ := core.Marshal(reason)
	rt.r.Route(ctx, &core.Message{DstID: msg.SrcID, Handle: msg.ReplyTo, ReplyTo: core.IsDead, Data: data})
}

// onLoadModule assembles the module chunks a parent pushes, ahead of
// calls or in answer to GET_MODULE, and stores each complete module.
func (rt *Runtime) onLoadModule(msg *core.Message) {
	var c moduleChunk
	if err := msg.Decode(&c); err != nil {
		rt.r.Logger().Error("bad LOAD_MODULE", "err", err)
		return
	}
	key := fmt.Sprintf("%d:%s@%s", c.Kind, c.Path, c.SHA256)
	rt.mu.Lock()
	buf := rt.partial[key]
	switch {
	case c.Total < 0 || c.Total > maxBlobSize:
		err := fmt.Errorf("module %q: announced size %d is over the %d-byte limit", c.Path, c.Total, maxBlobSize)
		delete(rt.partial, key)
		rt.mu.Unlock()
		rt.r.Emit(slogError, "LOAD_MODULE: "+err.Error())
		return
	case c.Offset != len(buf) || c.Offset+len(c.Data) > c.Total:
		delete(rt.partial, key)
		rt.mu.Unlock()
		rt.r.Emit(slogError, fmt.Sprintf("LOAD_MODULE: module %q: chunk at offset %d out of order", c.Path, c.Offset))
		return
	}
	buf = append(buf, c.Data...)
	if len(buf) < c.Total {
		rt.partial[key] = buf
		rt.mu.Unlock()
		return
	}
	delete(rt.partial, key)
	rt.mu.Unlock()
	var b moduleBlob
	if err := core.Unmarshal(buf, &b); err != nil {
		rt.r.Emit(slogError, fmt.Sprintf("LOAD_MODULE: module %q: %v", c.Path, err))
		return
	}
	if b.Path != c.Path || b.SHA256 != c.SHA256 || b.Kind != c.Kind {
		rt.r.Emit(slogError, fmt.Sprintf("LOAD_MODULE: module %q: the chunks announce %d:%s@%s, the blob is %d:%s@%s", c.Path, c.Kind, c.Path, c.SHA256, b.Kind, b.Path, b.SHA256))
		return
	}
	if _, err := rt.addAny(b); err != nil {
		rt.r.Emit(slogError, "LOAD_MODULE: "+err.Error())
	}
}

// execModule runs a module's top level once per context and returns its
// frozen globals. A load cycle is an error naming the module.
func (rt *Runtime) execModule(thread *starlark.Thread, m *module) (starlark.StringDict, error) {
	stack, _ := thread.Local(loadStackKey).([]string)
	for _, p := range stack {
		if p == m.path {
			return nil, fmt.Errorf("load cycle: %s", strings.Join(append(stack, m.path), " -> "))
		}
	}
	m.once.Do(func() {
		t, done := rt.newThread("load "+m.path, builtinsThreadContext(thread))
		defer done()
		t.SetLocal(loadStackKey, append(append([]string(nil), stack...), m.path))
		g, err := m.prog.Init(t, rt.predeclaredNames())
		if err != nil {
			m.err = err
			return
		}
		g.Freeze()
		m.globals = g
	})
	return m.globals, m.err
}

const loadStackKey = "mitostar.loadstack"

// load implements thread.Load with the rules of docs/reference.md,
// "Scripts and modules".
func (rt *Runtime) load(thread *starlark.Thread, p string) (starlark.StringDict, error) {
	m, err := rt.moduleSource(p)
	if err != nil {
		return nil, err
	}
	return rt.execModule(thread, m)
}
