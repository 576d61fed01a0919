package builtins

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/cborhead"
)

// Values travel as CBOR (RFC 8949), encoded and decoded here straight
// from and to Starlark values: no reflection, no intermediate tree.
// docs/runtime.md ("Values") and docs/protocol.md describe the layout.

// CBOR tags for the Starlark values that CBOR has no type for. They are
// part of the wire protocol (docs/protocol.md, "Values").
const (
	TagRawString uint64 = 40100 // bytes: a string that is not valid UTF-8
	TagTuple     uint64 = 40101 // array
	TagSet       uint64 = 40102 // array of elements
	TagDict      uint64 = 40103 // array [k1, v1, k2, v2, ...] in insertion order
	TagStruct    uint64 = 40104 // array [k1, v1, ...]
	TagContext   uint64 = 40105 // array [id, name, id of the context that started it (0: the master, or unknown)]
	TagSender    uint64 = 40106 // array [context id, context name, handle]
	TagError     uint64 = 40107 // array [kind, message, traceback, context]
	TagFunc      uint64 = 40108 // array [module path, sha256, name]
	TagBuiltin   uint64 = 40109 // text: the registered builtin's name
)

// CBOR major types and the standard tags used here.
const (
	majorUint   = 0
	majorNeg    = 1
	majorBytes  = 2
	majorText   = 3
	majorArray  = 4
	majorMap    = 5
	majorTag    = 6
	majorSimple = 7

	tagPosBignum = 2
	tagNegBignum = 3
)

// maxEncodeDepth bounds the nesting of encoded and decoded values
// (cycles included).
const maxEncodeDepth = 200

// maxElements bounds the element count of one decoded array or map, as
// core.DecodeOptions does for Go values.
const maxElements = 1 << 26

// bigPiece is the size from which the encoder does not copy a string or
// bytes value into its buffer: the value goes to the stream as a piece of
// its own (Starlark strings never change), written from its own memory.
const bigPiece = 32 << 10

// Encode returns the CBOR encoding of a Starlark value in one buffer.
// Values of a type that cannot cross contexts are an error naming the
// type.
func Encode(refs FuncRefs, v starlark.Value) ([]byte, error) {
	head, tail, err := EncodePieces(refs, nil, v)
	if err != nil {
		return nil, err
	}
	for _, p := range tail {
		head = append(head, p...)
	}
	return head, nil
}

// EncodePieces encodes v after prefix: head, then the strings of tail
// (see core.Message.Tail). Large strings and bytes stay in the value's
// own memory as pieces of their own, so sending them copies nothing;
// tail is nil when there are none.
func EncodePieces(refs FuncRefs, prefix []byte, v starlark.Value) (head []byte, tail []string, err error) {
	e := encoder{buf: append(make([]byte, 0, 64), prefix...), refs: refs}
	if err := e.value(v, 0); err != nil {
		return nil, nil, err
	}
	head, tail = e.finish()
	return head, tail, nil
}

// EncodeArgs encodes a call's positional and keyword arguments as one
// value, [[args...], [name1, value1, ...]], in pieces as EncodePieces.
func EncodeArgs(refs FuncRefs, args starlark.Tuple, kwargs []starlark.Tuple) (head []byte, tail []string, err error) {
	e := encoder{buf: make([]byte, 0, 64), refs: refs}
	e.item(majorArray, 2)
	e.item(majorArray, uint64(len(args)))
	for i, x := range args {
		if err := e.value(x, 1); err != nil {
			return nil, nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
	}
	e.item(majorArray, uint64(2*len(kwargs)))
	for _, pair := range kwargs {
		e.text(string(pair[0].(starlark.String)))
		if err := e.value(pair[1], 1); err != nil {
			return nil, nil, fmt.Errorf("argument %s: %w", pair[0], err)
		}
	}
	head, tail = e.finish()
	return head, tail, nil
}

// encodeJoined is EncodeArgs in one buffer.
func encodeJoined(refs FuncRefs, args starlark.Tuple, kwargs []starlark.Tuple) ([]byte, error) {
	head, tail, err := EncodeArgs(refs, args, kwargs)
	for _, p := range tail {
		head = append(head, p...)
	}
	return head, err
}

// An encoder appends to buf until a large string is split off: then the
// encoding so far is head (once) or a piece of tail, the string a piece
// of tail, and buf starts again.
type encoder struct {
	buf   []byte
	head  []byte
	tail  []string
	split bool
	refs  FuncRefs // how Starlark functions travel; nil: they cannot
}

func (e *encoder) finish() (head []byte, tail []string) {
	if !e.split {
		return e.buf, nil
	}
	if len(e.buf) > 0 {
		e.tail = append(e.tail, string(e.buf))
	}
	return e.head, e.tail
}

// item appends an item head: the major type and its argument.
func (e *encoder) item(major byte, n uint64) { e.buf = cborhead.Append(e.buf, major, n) }

// str appends a byte or text string; a large one becomes a piece.
func (e *encoder) str(major byte, s string) {
	e.item(major, uint64(len(s)))
	if len(s) < bigPiece {
		e.buf = append(e.buf, s...)
		return
	}
	if !e.split {
		e.head, e.split = e.buf, true
	} else {
		e.tail = append(e.tail, string(e.buf))
	}
	e.tail = append(e.tail, s)
	e.buf = make([]byte, 0, 64)
}

func (e *encoder) text(s string) { e.str(majorText, s) }

func (e *encoder) uint(n uint64) { e.item(majorUint, n) }

func (e *encoder) int(i int64) {
	if i >= 0 {
		e.item(majorUint, uint64(i))
	} else {
		e.item(majorNeg, uint64(-1-i))
	}
}

func (e *encoder) bigInt(b *big.Int) {
	if b.Sign() >= 0 {
		e.item(majorTag, tagPosBignum)
		e.str(majorBytes, string(b.Bytes()))
		return
	}
	n := new(big.Int).Neg(b)
	n.Sub(n, big.NewInt(1))
	e.item(majorTag, tagNegBignum)
	e.str(majorBytes, string(n.Bytes()))
}

func (e *encoder) texts(tag uint64, s ...string) {
	e.item(majorTag, tag)
	e.item(majorArray, uint64(len(s)))
	for _, x := range s {
		e.text(x)
	}
}

func (e *encoder) seq(it starlark.Iterable, n int, depth int) error {
	e.item(majorArray, uint64(n))
	iter := it.Iterate()
	defer iter.Done()
	var x starlark.Value
	for iter.Next(&x) {
		if err := e.value(x, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) value(v starlark.Value, depth int) error {
	if depth > maxEncodeDepth {
		return fmt.Errorf("value nested more than %d levels deep (a cycle?)", maxEncodeDepth)
	}
	switch x := v.(type) {
	case starlark.NoneType:
		e.buf = append(e.buf, 0xf6)
	case starlark.Bool:
		if x {
			e.buf = append(e.buf, 0xf5)
		} else {
			e.buf = append(e.buf, 0xf4)
		}
	case starlark.Int:
		if i, ok := x.Int64(); ok {
			e.int(i)
		} else if u, ok := x.Uint64(); ok {
			e.uint(u)
		} else {
			e.bigInt(x.BigInt())
		}
	case starlark.Float:
		e.buf = binary.BigEndian.AppendUint64(append(e.buf, 0xfb), math.Float64bits(float64(x)))
	case starlark.String:
		if utf8.ValidString(string(x)) {
			e.text(string(x))
		} else {
			e.item(majorTag, TagRawString)
			e.str(majorBytes, string(x))
		}
	case starlark.Bytes:
		e.str(majorBytes, string(x))
	case *starlark.List:
		e.item(majorArray, uint64(x.Len()))
		for i := 0; i < x.Len(); i++ {
			if err := e.value(x.Index(i), depth+1); err != nil {
				return err
			}
		}
	case starlark.Tuple:
		e.item(majorTag, TagTuple)
		e.item(majorArray, uint64(len(x)))
		for _, el := range x {
			if err := e.value(el, depth+1); err != nil {
				return err
			}
		}
	case *starlark.Set:
		e.item(majorTag, TagSet)
		return e.seq(x, x.Len(), depth)
	case *starlark.Dict:
		e.item(majorTag, TagDict)
		e.item(majorArray, uint64(2*x.Len()))
		for _, item := range x.Items() {
			if err := e.value(item[0], depth+1); err != nil {
				return err
			}
			if err := e.value(item[1], depth+1); err != nil {
				return err
			}
		}
	case *starlarkstruct.Struct:
		if x.Constructor() != starlarkstruct.Default {
			return fmt.Errorf("cannot send a struct made by %s: only struct() values travel", x.Constructor())
		}
		names := x.AttrNames()
		e.item(majorTag, TagStruct)
		e.item(majorArray, uint64(2*len(names)))
		for _, n := range names {
			fv, _ := x.Attr(n)
			e.text(n)
			if err := e.value(fv, depth+1); err != nil {
				return err
			}
		}
	case *Context:
		e.item(majorTag, TagContext)
		e.item(majorArray, 3)
		e.uint(uint64(x.C.ID))
		e.text(x.C.Name())
		e.uint(uint64(parentOf(x.C)))
	case *Sender:
		c := x.S.Context()
		e.item(majorTag, TagSender)
		e.item(majorArray, 3)
		e.uint(uint64(c.ID))
		e.text(c.Name())
		e.uint(uint64(x.S.Handle()))
	case *Error:
		e.texts(TagError, x.Kind, x.Message, x.Traceback, x.Context)
	case *starlark.Builtin, *starlark.Function, FuncRefValue:
		ref, err := refOf(e.refs, x)
		if err != nil {
			return err
		}
		if ref.builtin != "" {
			e.item(majorTag, TagBuiltin)
			e.text(ref.builtin)
		} else {
			e.texts(TagFunc, ref.path, ref.sha, ref.name)
		}
	default:
		return fmt.Errorf("cannot send a value of type %s to another context", v.Type())
	}
	return nil
}

// A funcRef is how a function travels: a registered builtin by name, a
// Starlark function by module path, sha256 and name.
type funcRef struct{ builtin, path, sha, name string }

func refOf(refs FuncRefs, v starlark.Value) (funcRef, error) {
	switch x := v.(type) {
	case *starlark.Builtin:
		if !IsRegistered(x) {
			return funcRef{}, fmt.Errorf("cannot send builtin %s: only registered builtins (os.getpid, ...) travel by name", x.Name())
		}
		return funcRef{builtin: x.Name()}, nil
	case *starlark.Function:
		if refs == nil {
			return funcRef{}, fmt.Errorf("cannot send function %s: no runtime", x.Name())
		}
		path, sha, name, err := refs.FuncRef(x)
		if err != nil {
			return funcRef{}, err
		}
		return funcRef{path: path, sha: sha, name: name}, nil
	case FuncRefValue:
		path, sha, name := x.FuncRef()
		return funcRef{path: path, sha: sha, name: name}, nil
	}
	return funcRef{}, fmt.Errorf("cannot send a value of type %s to another context", v.Type())
}

// refTree is a function reference as plain Go data, in the layout the
// encoder writes (for ToGo).
func refTree(refs FuncRefs, v starlark.Value) (any, error) {
	ref, err := refOf(refs, v)
	if err != nil {
		return nil, err
	}
	if ref.builtin != "" {
		return cbor.Tag{Number: TagBuiltin, Content: ref.builtin}, nil
	}
	return cbor.Tag{Number: TagFunc, Content: []any{ref.path, ref.sha, ref.name}}, nil
}

// A FuncRefValue is a Starlark value that can travel as a function
// reference (a top-level function of a module, or a registered builtin).
// *starlark.Function values are resolved through a FuncRefs.
type FuncRefValue interface {
	starlark.Value
	FuncRef() (path, sha, name string)
}

// FuncRefs says how a Starlark function travels: its module's path and
// sha256, and its name, or an error saying why it cannot (a lambda, a
// nested function, a module this context does not know). Each context's
// runtime is one; the encoder asks the runtime of the thread it encodes
// for.
type FuncRefs interface {
	FuncRef(fn *starlark.Function) (path, sha, name string, err error)
}

// A Decoder turns CBOR back into fresh, mutable Starlark values. Router
// makes Context and Sender values; Resolve (set by the runtime) turns a
// function reference into a callable value.
type Decoder struct {
	Router  *core.Router
	Resolve func(path, sha, name string) (starlark.Value, error)
}

// Decode decodes one value that fills data. The value copies what it
// keeps: data may change afterwards.
func (d *Decoder) Decode(data []byte) (starlark.Value, error) {
	s := decodeState{d: d, data: data}
	v, err := s.value(0)
	if err == nil && s.off != len(data) {
		err = fmt.Errorf("%d bytes of extraneous data after the value", len(data)-s.off)
	}
	if err != nil {
		return nil, fmt.Errorf("decoding value: %w", err)
	}
	return v, nil
}

// DecodeArgs decodes what EncodeArgs produced.
func (d *Decoder) DecodeArgs(data []byte) (starlark.Tuple, []starlark.Tuple, error) {
	s := decodeState{d: d, data: data}
	args, kwargs, err := s.args()
	if err == nil && s.off != len(data) {
		err = fmt.Errorf("%d bytes of extraneous data", len(data)-s.off)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("decoding arguments: %w", err)
	}
	return args, kwargs, nil
}

type decodeState struct {
	d    *Decoder
	data []byte
	off  int
}

// head reads an item head (core.ReadHead).
func (s *decodeState) head() (major byte, info byte, n uint64, err error) {
	major, info, n, rest, err := cborhead.Read(s.data[s.off:])
	if err != nil {
		return 0, 0, 0, fmt.Errorf("at offset %d: %w", s.off, err)
	}
	s.off = len(s.data) - len(rest)
	return major, info, n, nil
}

// count checks an array or map length against what is left: every
// element takes at least one byte, so a forged count allocates nothing.
func (s *decodeState) count(n uint64, per int) (int, error) {
	if n > maxElements || n*uint64(per) > uint64(len(s.data)-s.off) {
		return 0, fmt.Errorf("%d elements cannot fit in the %d bytes left", n, len(s.data)-s.off)
	}
	return int(n), nil
}

// raw returns the next n bytes of string content.
func (s *decodeState) raw(n uint64) ([]byte, error) {
	if n > uint64(len(s.data)-s.off) {
		return nil, cborhead.ErrTruncated
	}
	b := s.data[s.off : s.off+int(n)]
	s.off += int(n)
	return b, nil
}

// text reads an item that must be a text string.
func (s *decodeState) text() (string, error) {
	major, _, n, err := s.head()
	if err != nil {
		return "", err
	}
	if major != majorText {
		return "", fmt.Errorf("want a text string, got major type %d", major)
	}
	b, err := s.raw(n)
	return string(b), err
}

// uint32Item reads an item that must be an unsigned integer below 2^32.
func (s *decodeState) uint32Item() (uint32, error) {
	major, _, n, err := s.head()
	if err != nil {
		return 0, err
	}
	if major != majorUint || n > math.MaxUint32 {
		return 0, fmt.Errorf("want an id or handle, got major type %d value %d", major, n)
	}
	return uint32(n), nil
}

// array reads the head of an array and returns its element count.
func (s *decodeState) array(per int) (int, error) {
	major, _, n, err := s.head()
	if err != nil {
		return 0, err
	}
	if major != majorArray {
		return 0, fmt.Errorf("want an array, got major type %d", major)
	}
	return s.count(n, per)
}

func (s *decodeState) args() (starlark.Tuple, []starlark.Tuple, error) {
	if n, err := s.array(1); err != nil {
		return nil, nil, err
	} else if n != 2 {
		return nil, nil, fmt.Errorf("want [args, kwargs], got %d elements", n)
	}
	n, err := s.array(1)
	if err != nil {
		return nil, nil, err
	}
	args := make(starlark.Tuple, n)
	for i := range args {
		if args[i], err = s.value(1); err != nil {
			return nil, nil, err
		}
	}
	if n, err = s.array(1); err != nil {
		return nil, nil, err
	}
	if n%2 != 0 {
		return nil, nil, fmt.Errorf("keyword list of odd length %d", n)
	}
	kwargs := make([]starlark.Tuple, n/2)
	for i := range kwargs {
		k, err := s.text()
		if err != nil {
			return nil, nil, fmt.Errorf("keyword name: %w", err)
		}
		v, err := s.value(1)
		if err != nil {
			return nil, nil, err
		}
		kwargs[i] = starlark.Tuple{starlark.String(k), v}
	}
	return args, kwargs, nil
}

func (s *decodeState) values(n, depth int) ([]starlark.Value, error) {
	out := make([]starlark.Value, n)
	for i := range out {
		v, err := s.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (s *decodeState) value(depth int) (starlark.Value, error) {
	if depth > maxEncodeDepth {
		return nil, fmt.Errorf("nested more than %d levels deep", maxEncodeDepth)
	}
	major, info, n, err := s.head()
	if err != nil {
		return nil, err
	}
	switch major {
	case majorUint:
		return starlark.MakeUint64(n), nil
	case majorNeg:
		if n <= math.MaxInt64 {
			return starlark.MakeInt64(-1 - int64(n)), nil
		}
		b := new(big.Int).SetUint64(n)
		return starlark.MakeBigInt(b.Neg(b.Add(b, big.NewInt(1)))), nil
	case majorBytes:
		b, err := s.raw(n)
		if err != nil {
			return nil, err
		}
		return starlark.Bytes(b), nil
	case majorText:
		b, err := s.raw(n)
		if err != nil {
			return nil, err
		}
		return starlark.String(b), nil
	case majorArray:
		c, err := s.count(n, 1)
		if err != nil {
			return nil, err
		}
		elems, err := s.values(c, depth)
		if err != nil {
			return nil, err
		}
		return starlark.NewList(elems), nil
	case majorMap:
		c, err := s.count(n, 2)
		if err != nil {
			return nil, err
		}
		return s.dict(c, depth)
	case majorTag:
		return s.tagged(n, depth)
	}
	switch info {
	case 20:
		return starlark.False, nil
	case 21:
		return starlark.True, nil
	case 22, 23: // null, undefined
		return starlark.None, nil
	case 25:
		return starlark.Float(halfFloat(uint16(n))), nil
	case 26:
		return starlark.Float(math.Float32frombits(uint32(n))), nil
	case 27:
		return starlark.Float(math.Float64frombits(n)), nil
	}
	return nil, fmt.Errorf("unsupported CBOR simple value %d", n)
}

// dict reads n key/value pairs; a repeated key is an error.
func (s *decodeState) dict(n, depth int) (starlark.Value, error) {
	dict := starlark.NewDict(n)
	for i := 0; i < n; i++ {
		k, err := s.value(depth + 1)
		if err != nil {
			return nil, err
		}
		v, err := s.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if err := dict.SetKey(k, v); err != nil {
			return nil, fmt.Errorf("dict: %w", err)
		}
		if dict.Len() != i+1 {
			return nil, fmt.Errorf("dict: duplicate key %s", k)
		}
	}
	return dict, nil
}

func (s *decodeState) tagged(tag uint64, depth int) (starlark.Value, error) {
	bad := func(err error) (starlark.Value, error) {
		return nil, fmt.Errorf("malformed CBOR tag %d: %w", tag, err)
	}
	switch tag {
	case tagPosBignum, tagNegBignum, TagRawString:
		major, _, n, err := s.head()
		if err != nil {
			return bad(err)
		}
		if major != majorBytes {
			return bad(fmt.Errorf("want a byte string, got major type %d", major))
		}
		b, err := s.raw(n)
		if err != nil {
			return bad(err)
		}
		if tag == TagRawString {
			return starlark.String(b), nil
		}
		z := new(big.Int).SetBytes(b)
		if tag == tagNegBignum {
			z.Neg(z.Add(z, big.NewInt(1)))
		}
		return starlark.MakeBigInt(z), nil
	case TagBuiltin:
		name, err := s.text()
		if err != nil {
			return bad(err)
		}
		b, found := Lookup(name)
		if !found {
			return nil, fmt.Errorf("no builtin named %q in this binary", name)
		}
		return b, nil
	}
	if tag < TagTuple || tag > TagFunc {
		return nil, fmt.Errorf("unknown CBOR tag %d", tag)
	}
	n, err := s.array(1)
	if err != nil {
		return bad(err)
	}
	want := func(k int) error {
		if n != k {
			return fmt.Errorf("want %d elements, got %d", k, n)
		}
		return nil
	}
	switch tag {
	case TagTuple:
		elems, err := s.values(n, depth)
		if err != nil {
			return nil, err
		}
		return starlark.Tuple(elems), nil
	case TagSet:
		elems, err := s.values(n, depth)
		if err != nil {
			return nil, err
		}
		set := starlark.NewSet(n)
		for _, e := range elems {
			if err := set.Insert(e); err != nil {
				return nil, fmt.Errorf("set: %w", err)
			}
		}
		return set, nil
	case TagDict:
		if n%2 != 0 {
			return bad(fmt.Errorf("odd element count %d", n))
		}
		dict := starlark.NewDict(n / 2)
		for i := 0; i < n; i += 2 {
			k, err := s.value(depth + 1)
			if err != nil {
				return nil, err
			}
			v, err := s.value(depth + 1)
			if err != nil {
				return nil, err
			}
			if err := dict.SetKey(k, v); err != nil {
				return nil, fmt.Errorf("dict: %w", err)
			}
		}
		return dict, nil
	case TagStruct:
		if n%2 != 0 {
			return bad(fmt.Errorf("odd element count %d", n))
		}
		sd := make(starlark.StringDict, n/2)
		for i := 0; i < n; i += 2 {
			k, err := s.text()
			if err != nil {
				return bad(err)
			}
			v, err := s.value(depth + 1)
			if err != nil {
				return nil, err
			}
			sd[k] = v
		}
		return starlarkstruct.FromStringDict(starlarkstruct.Default, sd), nil
	case TagContext, TagSender:
		if err := want(3); err != nil {
			return bad(err)
		}
		id, err := s.uint32Item()
		if err != nil {
			return bad(err)
		}
		name, err := s.text()
		if err != nil {
			return bad(err)
		}
		third, err := s.uint32Item() // a Sender's handle, or the id of the context that started a Context
		if err != nil {
			return bad(err)
		}
		if s.d.Router == nil {
			return nil, errors.New("a context needs a router")
		}
		c := s.d.Router.ContextByName(id, name)
		if tag == TagContext {
			learnVia(c, third)
			return NewContext(c), nil
		}
		handle := third
		return &Sender{S: core.NewSender(c, handle)}, nil
	case TagError, TagFunc:
		k := 4
		if tag == TagFunc {
			k = 3
		}
		if err := want(k); err != nil {
			return bad(err)
		}
		var t [4]string
		for i := 0; i < k; i++ {
			if t[i], err = s.text(); err != nil {
				return bad(err)
			}
		}
		if tag == TagError {
			return &Error{Kind: t[0], Message: t[1], Traceback: t[2], Context: t[3]}, nil
		}
		if s.d.Resolve == nil {
			return nil, fmt.Errorf("cannot resolve function %s in %s", t[2], t[0])
		}
		return s.d.Resolve(t[0], t[1], t[2])
	}
	return nil, fmt.Errorf("unknown CBOR tag %d", tag)
}

// halfFloat converts an IEEE 754 half-precision float.
func halfFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1+frac/1024, exp-15)
}

// fromScalar converts the scalar items of CBOR decoded into Go data.
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
		return starlark.Bytes(x), true
	}
	return nil, false
}
