package core

import (
	"errors"
	"math"
)

var errNotInt = errors.New("want a CBOR integer")

// The handshake by hand.
//
// HelloRequest and HelloReply are the first messages a child decodes and
// encodes: through fxamacker/cbor each costs the child its first
// reflection walk of the type (~0.3 ms and a dozen fresh pages on the
// benchmark machines), on the critical path of every connect. These
// functions write exactly the bytes Marshal writes (the tests compare
// them) and read that shape directly; anything else (keys in another
// order, unknown keys, other integer widths) is read by the reflecting
// decoder as before.

// encodeHelloRequest returns the CBOR encoding of h, as Marshal(h).
func encodeHelloRequest(h *HelloRequest) []byte {
	b := make([]byte, 0, 64+len(h.Version)+len(h.Name)+5*len(h.ParentIDs)+len(h.Ext))
	b = AppendHead(b, 5, 10)
	b = appendInt(AppendHead(b, 0, 1), int64(h.Protocol))
	b = appendText(AppendHead(b, 0, 2), h.Version)
	b = AppendHead(AppendHead(b, 0, 3), 0, uint64(h.ID))
	b = AppendHead(b, 0, 4)
	if h.ParentIDs == nil {
		b = append(b, cborNull)
	} else {
		b = AppendHead(b, 4, uint64(len(h.ParentIDs)))
		for _, id := range h.ParentIDs {
			b = AppendHead(b, 0, uint64(id))
		}
	}
	b = appendText(AppendHead(b, 0, 5), h.Name)
	b = appendInt(AppendHead(b, 0, 6), int64(h.MaxMessageSize))
	b = appendInt(AppendHead(b, 0, 7), int64(h.LogLevel))
	b = appendBool(AppendHead(b, 0, 8), h.Debug)
	b = appendBool(AppendHead(b, 0, 9), h.Unidirectional)
	b = AppendHead(b, 0, 10)
	if h.Ext == nil {
		return append(b, cborNull)
	}
	return append(AppendHead(b, 2, uint64(len(h.Ext))), h.Ext...)
}

// decodeHelloRequest reads a HelloRequest payload.
func decodeHelloRequest(data []byte, h *HelloRequest) error {
	if readHelloRequest(data, h) {
		return nil
	}
	*h = HelloRequest{}
	return unmarshal(data, h)
}

// readHelloRequest reads the shape encodeHelloRequest writes; false
// means data is some other (maybe valid) encoding.
func readHelloRequest(data []byte, h *HelloRequest) bool {
	major, n, rest, err := readHead(data)
	if err != nil || major != 5 || n != 10 {
		return false
	}
	var v int64
	for key := uint64(1); key <= 10; key++ {
		var k uint64
		if k, rest, err = readUint(rest); err != nil || k != key {
			return false
		}
		switch key {
		case 1, 6, 7:
			if v, rest, err = readInt(rest); err != nil || v != int64(int(v)) {
				return false
			}
			switch key {
			case 1:
				h.Protocol = int(v)
			case 6:
				h.MaxMessageSize = int(v)
			case 7:
				h.LogLevel = int(v)
			}
		case 2:
			if h.Version, rest, err = readText(rest); err != nil {
				return false
			}
		case 5:
			if h.Name, rest, err = readText(rest); err != nil {
				return false
			}
		case 3:
			if k, rest, err = readUint(rest); err != nil || k > math.MaxUint32 {
				return false
			}
			h.ID = uint32(k)
		case 4:
			if len(rest) > 0 && rest[0] == cborNull {
				h.ParentIDs, rest = nil, rest[1:]
				continue
			}
			if major, n, rest, err = readHead(rest); err != nil || major != 4 || n > uint64(len(rest)) {
				return false
			}
			h.ParentIDs = make([]uint32, n)
			for i := range h.ParentIDs {
				if k, rest, err = readUint(rest); err != nil || k > math.MaxUint32 {
					return false
				}
				h.ParentIDs[i] = uint32(k)
			}
		case 8, 9:
			if len(rest) == 0 || (rest[0] != 0xf4 && rest[0] != 0xf5) {
				return false
			}
			if key == 8 {
				h.Debug = rest[0] == 0xf5
			} else {
				h.Unidirectional = rest[0] == 0xf5
			}
			rest = rest[1:]
		case 10:
			if len(rest) > 0 && rest[0] == cborNull {
				h.Ext, rest = nil, rest[1:]
				continue
			}
			var ext []byte
			if ext, rest, err = readBytes(rest); err != nil {
				return false
			}
			h.Ext = append(make([]byte, 0, len(ext)), ext...)
		}
	}
	return len(rest) == 0
}

// encodeHelloReply returns the CBOR encoding of r, as Marshal(r).
func encodeHelloReply(r *HelloReply) []byte {
	b := make([]byte, 0, 24+len(r.Version)+len(r.Error))
	b = AppendHead(b, 5, 4)
	b = appendInt(AppendHead(b, 0, 1), int64(r.Protocol))
	b = appendText(AppendHead(b, 0, 2), r.Version)
	b = appendInt(AppendHead(b, 0, 3), int64(r.PID))
	return appendText(AppendHead(b, 0, 4), r.Error)
}

// decodeHelloReply reads a HelloReply payload.
func decodeHelloReply(data []byte, r *HelloReply) error {
	if readHelloReply(data, r) {
		return nil
	}
	*r = HelloReply{}
	return unmarshal(data, r)
}

func readHelloReply(data []byte, r *HelloReply) bool {
	major, n, rest, err := readHead(data)
	if err != nil || major != 5 || n != 4 {
		return false
	}
	var v int64
	for key := uint64(1); key <= 4; key++ {
		var k uint64
		if k, rest, err = readUint(rest); err != nil || k != key {
			return false
		}
		switch key {
		case 1, 3:
			if v, rest, err = readInt(rest); err != nil || v != int64(int(v)) {
				return false
			}
			if key == 1 {
				r.Protocol = int(v)
			} else {
				r.PID = int(v)
			}
		case 2:
			if r.Version, rest, err = readText(rest); err != nil {
				return false
			}
		case 4:
			if r.Error, rest, err = readText(rest); err != nil {
				return false
			}
		}
	}
	return len(rest) == 0
}

func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		return AppendHead(b, 1, uint64(-1-v))
	}
	return AppendHead(b, 0, uint64(v))
}

func appendText(b []byte, s string) []byte { return append(AppendHead(b, 3, uint64(len(s))), s...) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xf5)
	}
	return append(b, 0xf4)
}

// readInt reads a CBOR integer (major type 0 or 1) that fits an int64.
func readInt(b []byte) (int64, []byte, error) {
	major, n, rest, err := readHead(b)
	if err != nil {
		return 0, nil, err
	}
	if (major != 0 && major != 1) || n > math.MaxInt64 {
		return 0, nil, errNotInt
	}
	if major == 1 {
		return -1 - int64(n), rest, nil
	}
	return int64(n), rest, nil
}
