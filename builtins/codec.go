package builtins

import (
	"bytes"
	"fmt"
	"math/big"
	"unicode/utf8"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/mitostar/mitostar/core"
)

// CBOR tags for the Starlark values that CBOR has no type for. They are
// part of the wire protocol (docs/protocol.md, "Values").
const (
	TagRawString uint64 = 40100 // bytes: a string that is not valid UTF-8
	TagTuple     uint64 = 40101 // array
	TagSet       uint64 = 40102 // array of elements
	TagDict      uint64 = 40103 // array [k1, v1, k2, v2, ...] in insertion order
	TagStruct    uint64 = 40104 // array [k1, v1, ...]
	TagContext   uint64 = 40105 // array [id, name]
	TagSender    uint64 = 40106 // array [context id, context name, handle]
	TagError     uint64 = 40107 // array [kind, message, traceback, context]
	TagFunc      uint64 = 40108 // array [module path, sha256, name]
	TagBuiltin   uint64 = 40109 // text: the registered builtin's name
)

// maxEncodeDepth bounds the nesting of encoded values (cycles included).
const maxEncodeDepth = 200

// Encode returns the CBOR encoding of a Starlark value. Values of a type
// that cannot cross contexts are an error naming the type.
func Encode(v starlark.Value) ([]byte, error) {
	tree, err := toTree(v, 0)
	if err != nil {
		return nil, err
	}
	return marshalTree(tree)
}

// marshalTree encodes straight into a buffer of about the right size:
// a large value is then written once, into memory touched once.
func marshalTree(tree any) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(treeSize(tree))
	if err := core.MarshalToBuffer(tree, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// treeSize estimates the encoded size of a tree made by toTree.
func treeSize(t any) int {
	const head = 9 // the longest CBOR item head
	switch x := t.(type) {
	case []byte:
		return head + len(x)
	case string:
		return head + len(x)
	case []any:
		n := head
		for _, e := range x {
			n += treeSize(e)
		}
		return n
	case cbor.Tag:
		return head + treeSize(x.Content)
	case *big.Int:
		return head + len(x.Bits())*8
	}
	return head
}

// EncodeArgs encodes a call's positional and keyword arguments as one
// value: [args..., ] and the keyword pairs.
func EncodeArgs(args starlark.Tuple, kwargs []starlark.Tuple) ([]byte, error) {
	a := make([]any, len(args))
	for i, x := range args {
		t, err := toTree(x, 1)
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		a[i] = t
	}
	kw := make([]any, 0, 2*len(kwargs))
	for _, pair := range kwargs {
		t, err := toTree(pair[1], 1)
		if err != nil {
			return nil, fmt.Errorf("argument %s: %w", pair[0], err)
		}
		kw = append(kw, string(pair[0].(starlark.String)), t)
	}
	return marshalTree([]any{a, kw})
}

// A FuncRefValue is a Starlark value that can travel as a function
// reference (a top-level function of a module, or a registered builtin).
// The runtime resolves *starlark.Function values through FuncRefOf.
type FuncRefValue interface {
	starlark.Value
	FuncRef() (path, sha, name string)
}

// FuncRefOf resolves a *starlark.Function to its module path and hash;
// the runtime installs it. It returns an error saying why a function
// cannot travel (a lambda, a nested function).
var FuncRefOf func(fn *starlark.Function) (path, sha, name string, err error)

func toTree(v starlark.Value, depth int) (any, error) {
	if depth > maxEncodeDepth {
		return nil, fmt.Errorf("value nested more than %d levels deep (a cycle?)", maxEncodeDepth)
	}
	switch x := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.Bool:
		return bool(x), nil
	case starlark.Int:
		if i, ok := x.Int64(); ok {
			return i, nil
		}
		if u, ok := x.Uint64(); ok {
			return u, nil
		}
		return x.BigInt(), nil
	case starlark.Float:
		return float64(x), nil
	case starlark.String:
		if utf8.ValidString(string(x)) {
			return string(x), nil
		}
		return cbor.Tag{Number: TagRawString, Content: []byte(x)}, nil
	case starlark.Bytes:
		if len(x) == 0 {
			return []byte{}, nil // a nil slice would encode as null
		}
		// The encoder only reads the bytes: alias the string, don't copy it.
		return unsafe.Slice(unsafe.StringData(string(x)), len(x)), nil
	case *starlark.List:
		return listTree(x, x.Len(), depth)
	case starlark.Tuple:
		a, err := listTree(x, x.Len(), depth)
		if err != nil {
			return nil, err
		}
		return cbor.Tag{Number: TagTuple, Content: a}, nil
	case *starlark.Set:
		a, err := listTree(x, x.Len(), depth)
		if err != nil {
			return nil, err
		}
		return cbor.Tag{Number: TagSet, Content: a}, nil
	case *starlark.Dict:
		a := make([]any, 0, 2*x.Len())
		for _, item := range x.Items() {
			k, err := toTree(item[0], depth+1)
			if err != nil {
				return nil, err
			}
			val, err := toTree(item[1], depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, k, val)
		}
		return cbor.Tag{Number: TagDict, Content: a}, nil
	case *starlarkstruct.Struct:
		if x.Constructor() != starlarkstruct.Default {
			return nil, fmt.Errorf("cannot send a struct made by %s: only struct() values travel", x.Constructor())
		}
		names := x.AttrNames()
		a := make([]any, 0, 2*len(names))
		for _, n := range names {
			fv, _ := x.Attr(n)
			t, err := toTree(fv, depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, n, t)
		}
		return cbor.Tag{Number: TagStruct, Content: a}, nil
	case *Context:
		return cbor.Tag{Number: TagContext, Content: []any{x.C.ID, x.C.Name()}}, nil
	case *Sender:
		c := x.S.Context()
		return cbor.Tag{Number: TagSender, Content: []any{c.ID, c.Name(), x.S.Handle()}}, nil
	case *Error:
		return cbor.Tag{Number: TagError, Content: []any{x.Kind, x.Message, x.Traceback, x.Context}}, nil
	case *starlark.Builtin:
		if !IsRegistered(x) {
			return nil, fmt.Errorf("cannot send builtin %s: only registered builtins (os.getpid, ...) travel by name", x.Name())
		}
		return cbor.Tag{Number: TagBuiltin, Content: x.Name()}, nil
	case *starlark.Function:
		if FuncRefOf == nil {
			return nil, fmt.Errorf("cannot send function %s: no runtime", x.Name())
		}
		path, sha, name, err := FuncRefOf(x)
		if err != nil {
			return nil, err
		}
		return cbor.Tag{Number: TagFunc, Content: []any{path, sha, name}}, nil
	case FuncRefValue:
		path, sha, name := x.FuncRef()
		return cbor.Tag{Number: TagFunc, Content: []any{path, sha, name}}, nil
	}
	return nil, fmt.Errorf("cannot send a value of type %s to another context", v.Type())
}

func listTree(it starlark.Iterable, n, depth int) ([]any, error) {
	a := make([]any, 0, n)
	iter := it.Iterate()
	defer iter.Done()
	var x starlark.Value
	for iter.Next(&x) {
		t, err := toTree(x, depth+1)
		if err != nil {
			return nil, err
		}
		a = append(a, t)
	}
	return a, nil
}

// A Decoder turns CBOR back into fresh, mutable Starlark values. Router
// makes Context and Sender values; Resolve (set by the runtime) turns a
// function reference into a callable value.
type Decoder struct {
	Router  *core.Router
	Resolve func(path, sha, name string) (starlark.Value, error)
}

// Decode decodes one value. A value that is one byte string aliases data
// instead of copying it: data must not change afterwards (message
// payloads never do).
func (d *Decoder) Decode(data []byte) (starlark.Value, error) {
	if b, ok := wholeByteString(data); ok {
		return starlark.Bytes(unsafe.String(unsafe.SliceData(b), len(b))), nil
	}
	var tree any
	if err := core.Unmarshal(data, &tree); err != nil {
		return nil, fmt.Errorf("decoding value: %w", err)
	}
	return d.fromTree(tree, 0)
}

// wholeByteString returns the content of data when data is exactly one
// definite-length CBOR byte string.
func wholeByteString(data []byte) ([]byte, bool) {
	if len(data) == 0 || data[0]>>5 != 2 {
		return nil, false
	}
	var n uint64
	off := 1
	switch ai := data[0] & 0x1f; {
	case ai < 24:
		n = uint64(ai)
	case ai <= 27:
		size := 1 << (ai - 24)
		if len(data) < 1+size {
			return nil, false
		}
		for _, c := range data[1 : 1+size] {
			n = n<<8 | uint64(c)
		}
		off += size
	default:
		return nil, false // indefinite length or reserved
	}
	if uint64(len(data)-off) != n {
		return nil, false
	}
	return data[off:], true
}

// DecodeArgs decodes what EncodeArgs produced.
func (d *Decoder) DecodeArgs(data []byte) (starlark.Tuple, []starlark.Tuple, error) {
	var pair []any
	if err := core.Unmarshal(data, &pair); err != nil {
		return nil, nil, fmt.Errorf("decoding arguments: %w", err)
	}
	if len(pair) != 2 {
		return nil, nil, fmt.Errorf("decoding arguments: want [args, kwargs], got %d elements", len(pair))
	}
	pos, ok1 := pair[0].([]any)
	kw, ok2 := pair[1].([]any)
	if !ok1 || !ok2 || len(kw)%2 != 0 {
		return nil, nil, fmt.Errorf("decoding arguments: malformed")
	}
	args := make(starlark.Tuple, len(pos))
	for i, t := range pos {
		v, err := d.fromTree(t, 1)
		if err != nil {
			return nil, nil, err
		}
		args[i] = v
	}
	kwargs := make([]starlark.Tuple, 0, len(kw)/2)
	for i := 0; i < len(kw); i += 2 {
		k, ok := kw[i].(string)
		if !ok {
			return nil, nil, fmt.Errorf("decoding arguments: keyword name is %T", kw[i])
		}
		v, err := d.fromTree(kw[i+1], 1)
		if err != nil {
			return nil, nil, err
		}
		kwargs = append(kwargs, starlark.Tuple{starlark.String(k), v})
	}
	return args, kwargs, nil
}

func (d *Decoder) fromTree(t any, depth int) (starlark.Value, error) {
	if depth > maxEncodeDepth {
		return nil, fmt.Errorf("decoding value: nested more than %d levels deep", maxEncodeDepth)
	}
	if v, ok := fromScalar(t); ok {
		return v, nil
	}
	switch x := t.(type) {
	case []any:
		elems, err := d.elems(x, depth)
		if err != nil {
			return nil, err
		}
		return starlark.NewList(elems), nil
	case cbor.Tag:
		return d.fromTag(x, depth)
	}
	return nil, fmt.Errorf("decoding value: unexpected CBOR item %T", t)
}

// fromScalar converts the scalar items of decoded CBOR. A []byte must
// be fresh from the decoder: the bytes value aliases it.
func fromScalar(t any) (starlark.Value, bool) {
	switch x := t.(type) {
	case nil:
		return starlark.None, true
	case bool:
		return starlark.Bool(x), true
	case uint64:
		return starlark.MakeUint64(x), true
	case int64:
		return starlark.MakeInt64(x), true
	case int:
		return starlark.MakeInt(x), true
	case big.Int:
		return starlark.MakeBigInt(&x), true
	case *big.Int:
		return starlark.MakeBigInt(x), true
	case float64:
		return starlark.Float(x), true
	case float32:
		return starlark.Float(x), true
	case string:
		return starlark.String(x), true
	case []byte:
		return starlark.Bytes(unsafe.String(unsafe.SliceData(x), len(x))), true
	}
	return nil, false
}

func (d *Decoder) elems(a []any, depth int) ([]starlark.Value, error) {
	out := make([]starlark.Value, len(a))
	for i, t := range a {
		v, err := d.fromTree(t, depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (d *Decoder) fromTag(tag cbor.Tag, depth int) (starlark.Value, error) {
	bad := func() (starlark.Value, error) {
		return nil, fmt.Errorf("decoding value: malformed CBOR tag %d", tag.Number)
	}
	if tag.Number == TagRawString {
		b, ok := tag.Content.([]byte)
		if !ok {
			return bad()
		}
		return starlark.String(b), nil
	}
	if tag.Number == TagBuiltin {
		name, ok := tag.Content.(string)
		if !ok {
			return bad()
		}
		b, found := Lookup(name)
		if !found {
			return nil, fmt.Errorf("decoding value: no builtin named %q in this binary", name)
		}
		return b, nil
	}
	a, ok := tag.Content.([]any)
	if !ok {
		return bad()
	}
	switch tag.Number {
	case TagTuple:
		elems, err := d.elems(a, depth)
		if err != nil {
			return nil, err
		}
		return starlark.Tuple(elems), nil
	case TagSet:
		elems, err := d.elems(a, depth)
		if err != nil {
			return nil, err
		}
		s := starlark.NewSet(len(elems))
		for _, e := range elems {
			if err := s.Insert(e); err != nil {
				return nil, fmt.Errorf("decoding set: %w", err)
			}
		}
		return s, nil
	case TagDict:
		if len(a)%2 != 0 {
			return bad()
		}
		dict := starlark.NewDict(len(a) / 2)
		for i := 0; i < len(a); i += 2 {
			k, err := d.fromTree(a[i], depth+1)
			if err != nil {
				return nil, err
			}
			v, err := d.fromTree(a[i+1], depth+1)
			if err != nil {
				return nil, err
			}
			if err := dict.SetKey(k, v); err != nil {
				return nil, fmt.Errorf("decoding dict: %w", err)
			}
		}
		return dict, nil
	case TagStruct:
		if len(a)%2 != 0 {
			return bad()
		}
		sd := make(starlark.StringDict, len(a)/2)
		for i := 0; i < len(a); i += 2 {
			k, ok := a[i].(string)
			if !ok {
				return bad()
			}
			v, err := d.fromTree(a[i+1], depth+1)
			if err != nil {
				return nil, err
			}
			sd[k] = v
		}
		return starlarkstruct.FromStringDict(starlarkstruct.Default, sd), nil
	case TagContext, TagSender:
		if (tag.Number == TagContext && len(a) != 2) || (tag.Number == TagSender && len(a) != 3) {
			return bad()
		}
		id, ok1 := a[0].(uint64)
		name, ok2 := a[1].(string)
		if !ok1 || !ok2 || id > 1<<32-1 {
			return bad()
		}
		if d.Router == nil {
			return nil, fmt.Errorf("decoding value: a context needs a router")
		}
		c := d.Router.ContextByName(uint32(id), name)
		if tag.Number == TagContext {
			return NewContext(c), nil
		}
		h, ok := a[2].(uint64)
		if !ok || h > 1<<32-1 {
			return bad()
		}
		return &Sender{S: core.NewSender(c, uint32(h))}, nil
	case TagError:
		if len(a) != 4 {
			return bad()
		}
		var s [4]string
		for i := range s {
			str, ok := a[i].(string)
			if !ok {
				return bad()
			}
			s[i] = str
		}
		return &Error{Kind: s[0], Message: s[1], Traceback: s[2], Context: s[3]}, nil
	case TagFunc:
		if len(a) != 3 {
			return bad()
		}
		var s [3]string
		for i := range s {
			str, ok := a[i].(string)
			if !ok {
				return bad()
			}
			s[i] = str
		}
		if d.Resolve == nil {
			return nil, fmt.Errorf("decoding value: cannot resolve function %s in %s", s[2], s[0])
		}
		return d.Resolve(s[0], s[1], s[2])
	}
	return nil, fmt.Errorf("decoding value: unknown CBOR tag %d", tag.Number)
}
