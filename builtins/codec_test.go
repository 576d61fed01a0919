package builtins

import (
	"bytes"
	"math"
	"math/big"
	"runtime"
	"strings"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/mitostar/mitostar/core"
)

func roundTrip(t *testing.T, v starlark.Value) starlark.Value {
	t.Helper()
	head, tail, err := EncodePieces(nil, nil, v)
	if err != nil {
		t.Fatalf("encoding %s: %v", v, err)
	}
	got, err := (&Decoder{}).Decode(join(head, tail))
	if err != nil {
		t.Fatalf("decoding %s: %v", v, err)
	}
	return got
}

func TestCodecRoundTrip(t *testing.T) {
	huge, _ := new(big.Int).SetString("-123456789012345678901234567890123456789", 10)
	set := starlark.NewSet(2)
	set.Insert(starlark.MakeInt(1))
	set.Insert(starlark.String("a"))
	dict := starlark.NewDict(2)
	dict.SetKey(starlark.String("z"), starlark.MakeInt(1))
	dict.SetKey(starlark.MakeInt(2), starlark.NewList([]starlark.Value{starlark.None}))
	values := []starlark.Value{
		starlark.None, starlark.True, starlark.False,
		starlark.MakeInt(0), starlark.MakeInt(23), starlark.MakeInt(24), starlark.MakeInt(-1), starlark.MakeInt(-25),
		starlark.MakeInt64(math.MaxInt64), starlark.MakeInt64(math.MinInt64),
		starlark.MakeUint64(math.MaxUint64),
		starlark.MakeBigInt(new(big.Int).Lsh(big.NewInt(1), 100)),
		starlark.MakeBigInt(new(big.Int).Neg(new(big.Int).Lsh(big.NewInt(1), 64))), // -2^64: the first negative bignum
		starlark.MakeBigInt(huge),
		starlark.Float(1.5), starlark.Float(math.Inf(-1)),
		starlark.String(""), starlark.String("héllo"), starlark.String("\xff\xfe not utf-8"),
		starlark.Bytes(""), starlark.Bytes("\x00\x01"),
		starlark.String(strings.Repeat("s", bigPiece+1)),
		starlark.Bytes(strings.Repeat("b", 3*bigPiece)),
		starlark.NewList([]starlark.Value{starlark.MakeInt(1), starlark.Tuple{starlark.String("x"), starlark.Bytes(strings.Repeat("y", bigPiece))}}),
		starlark.Tuple{}, set, dict,
		starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{"a": starlark.MakeInt(1), "b": starlark.Tuple{starlark.None}}),
		&Error{Kind: "CallError", Message: "boom", Traceback: "tb", Context: "local.1"},
	}
	for _, v := range values {
		got := roundTrip(t, v)
		if got.Type() != v.Type() {
			t.Fatalf("%.40s: came back as a %s", v, got.Type())
		}
		if _, isErr := v.(*Error); isErr {
			if *got.(*Error) != *v.(*Error) {
				t.Fatalf("error came back as %v", got)
			}
			continue
		}
		if eq, err := starlark.Equal(got, v); err != nil || !eq {
			t.Fatalf("%.60s came back as %.60s (%v)", v, got, err)
		}
	}
	if nan := roundTrip(t, starlark.Float(math.NaN())); !math.IsNaN(float64(nan.(starlark.Float))) {
		t.Fatalf("NaN came back as %v", nan)
	}
}

// join is a payload in one piece.
func join(head []byte, tail []string) []byte {
	for _, p := range tail {
		head = append(head, p...)
	}
	return head
}

// Large strings are sent from the value's own memory: encoding one
// copies nothing of it.
func TestCodecLargeStringsAreNotCopied(t *testing.T) {
	big := starlark.Bytes(strings.Repeat("x", 8<<20))
	value := starlark.Tuple{starlark.MakeInt(1), big, starlark.String("tail")}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	head, tail, err := EncodePieces(nil, []byte{0xf6}, value)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("encoding an 8 MiB bytes value allocated %d bytes", grew)
	}
	if len(tail) != 2 || tail[0] != string(big) {
		t.Fatalf("want the bytes value as the first piece of the tail, then the rest: %d pieces", len(tail))
	}
	if head[0] != 0xf6 {
		t.Fatalf("prefix lost: first byte %#x", head[0])
	}
	v, err := (&Decoder{}).Decode(join(head, tail)[1:])
	if err != nil {
		t.Fatal(err)
	}
	if eq, _ := starlark.Equal(v, value); !eq {
		t.Fatal("the value did not survive")
	}
}

func TestCodecArgs(t *testing.T) {
	args := starlark.Tuple{starlark.MakeInt(7), starlark.Bytes(strings.Repeat("a", 2*bigPiece))}
	kwargs := []starlark.Tuple{{starlark.String("name"), starlark.String("v")}}
	head, tail, err := EncodeArgs(nil, args, kwargs)
	if err != nil {
		t.Fatal(err)
	}
	if len(tail) != 2 || len(tail[0]) != 2*bigPiece {
		t.Fatalf("want the large argument as a piece of its own, then the keywords: %d pieces after the head", len(tail))
	}
	gotArgs, gotKw, err := (&Decoder{}).DecodeArgs(join(head, tail))
	if err != nil {
		t.Fatal(err)
	}
	if eq, _ := starlark.Equal(gotArgs, args); !eq || len(gotKw) != 1 || gotKw[0][0] != starlark.String("name") || gotKw[0][1] != starlark.String("v") {
		t.Fatalf("args %v kwargs %v", gotArgs, gotKw)
	}
	if _, _, err := EncodeArgs(nil, starlark.Tuple{starlark.None, &Receiver{}}, nil); err == nil || !strings.Contains(err.Error(), "argument 2:") {
		t.Fatalf("unsendable argument: %v", err)
	}
}

func TestCodecRefusesWhatCannotTravel(t *testing.T) {
	loop := starlark.NewList(nil)
	loop.Append(loop)
	for _, c := range []struct {
		v    starlark.Value
		want string
	}{
		{loop, "nested more than 200 levels"},
		{starlark.NewBuiltin("mine", nil), "only registered builtins"},
		{starlarkstruct.FromStringDict(starlark.String("point"), nil), "only struct() values travel"},
		{&Receiver{}, "cannot send a value of type receiver"},
	} {
		if _, err := Encode(nil, c.v); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("encoding %s: got %v, want an error containing %q", c.v.Type(), err, c.want)
		}
	}
}

func TestDecodeRefusesMalformedInput(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "unexpected end of data"},
		{"truncated string", []byte{0x45, 'a'}, "unexpected end of data"},
		{"truncated head", []byte{0x1b, 0, 0}, "unexpected end of data"},
		{"indefinite array", []byte{0x9f, 0xff}, "indefinite-length"},
		{"reserved head", []byte{0x1c}, "malformed CBOR head"},
		{"forged count", []byte{0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "cannot fit"},
		{"forged map count", []byte{0xa2, 0x01, 0x02}, "cannot fit"},
		{"trailing bytes", []byte{0x01, 0x02}, "extraneous"},
		{"unknown tag", []byte{0xc1, 0x01}, "unknown CBOR tag 1"},
		{"bad tuple", []byte{0xd9, 0x9c, 0xa5, 0x01}, "malformed CBOR tag 40101"},
		{"duplicate map key", []byte{0xa2, 0x01, 0x02, 0x01, 0x03}, "duplicate key"},
		{"unhashable key", []byte{0xa1, 0x80, 0x01}, "unhashable"},
		{"simple value", []byte{0xf0}, "unsupported CBOR simple value"},
		{"context without router", []byte{0xd9, 0x9c, 0xa9, 0x83, 0x01, 0x61, 'c', 0x00}, "needs a router"},
		{"context of two elements", []byte{0xd9, 0x9c, 0xa9, 0x82, 0x01, 0x61, 'c'}, "want 3 elements, got 2"},
	} {
		_, err := (&Decoder{}).Decode(c.data)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "decoding value: ") {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
	deep := append(bytes.Repeat([]byte{0x81}, 300), 0x01)
	if _, err := (&Decoder{}).Decode(deep); err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Errorf("deep nesting: %v", err)
	}
	if _, _, err := (&Decoder{}).DecodeArgs([]byte{0x82, 0x80, 0x81, 0x01}); err == nil || !strings.Contains(err.Error(), "odd length") {
		t.Errorf("odd keyword list: %v", err)
	}
}

// Values Go code encodes with core.Marshal decode too: maps become
// dicts, half and single floats widen.
func TestDecodeGoValues(t *testing.T) {
	data, err := core.Marshal(map[string]any{"k": []any{uint64(1), "s", []byte("b"), float32(0.5)}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := (&Decoder{}).Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"k": [1, "s", b"b", 0.5]}`
	if v.String() != want {
		t.Fatalf("got %s, want %s", v, want)
	}
	for bits, want := range map[uint16]float64{0x3c00: 1, 0xc000: -2, 0x0001: math.Ldexp(1, -24), 0x7c00: math.Inf(1)} {
		v, err := (&Decoder{}).Decode([]byte{0xf9, byte(bits >> 8), byte(bits)})
		if err != nil || float64(v.(starlark.Float)) != want {
			t.Errorf("half float %#04x: got %v, %v; want %v", bits, v, err, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, v := range []starlark.Value{
		starlark.NewList([]starlark.Value{starlark.MakeInt(-3), starlark.Float(2), starlark.String("x")}),
		starlark.Tuple{starlark.Bytes("b"), starlark.None, starlark.True},
		starlark.MakeBigInt(new(big.Int).Lsh(big.NewInt(3), 80)),
	} {
		data, err := Encode(nil, v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{0xd9, 0x9c, 0xa7, 0x84, 0x60, 0x60, 0x60, 0x60})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := (&Decoder{}).Decode(data)
		if err != nil {
			return
		}
		again, err := Encode(nil, v)
		if err != nil {
			return // a decoded value that cannot travel back (a Go map with list keys, ...)
		}
		w, err := (&Decoder{}).Decode(again)
		if err != nil {
			t.Fatalf("re-encoded %x does not decode: %v", again, err)
		}
		if v.String() != w.String() {
			t.Fatalf("round trip changed %s into %s", v, w)
		}
	})
}
