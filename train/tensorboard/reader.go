package tensorboard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"

	"google.golang.org/protobuf/encoding/protowire"
)

// Event is what ReadEvents decodes of an event record.
type Event struct {
	WallTime    float64
	Step        int64
	FileVersion string
	SessionLog  int // status of a SessionLog (1 = START), 0 if none
	Values      []Value
}

// Value is one summary value.
type Value struct {
	Tag         string
	Simple      *float32
	Text        []string // tensor string_val
	ImagePNG    []byte
	ImageW      int
	ImageH      int
	HistoCount  float64
	Plugin      string
	PluginBytes []byte
}

// ReadEvents reads every complete record of an event file, checking both CRCs.
// A cut final record (a killed writer) ends the read without error; a CRC
// mismatch is an error naming the offset.
func ReadEvents(path string) ([]Event, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out, err := ParseEvents(b)
	if err != nil {
		return out, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// ParseEvents decodes the records of an event file's bytes (see ReadEvents).
// Whatever the bytes, it returns an error rather than panicking.
func ParseEvents(b []byte) ([]Event, error) {
	var out []Event
	off := 0
	for off < len(b) {
		if len(b)-off < 12 {
			break
		}
		n64 := binary.LittleEndian.Uint64(b[off:])
		if MaskedCRC(b[off:off+8]) != binary.LittleEndian.Uint32(b[off+8:]) {
			return out, fmt.Errorf("bad length CRC at offset %d", off)
		}
		if n64 > uint64(len(b)-off-12) || int(n64) > len(b)-off-16 {
			break // cut record
		}
		n := int(n64)
		data := b[off+12 : off+12+n]
		if MaskedCRC(data) != binary.LittleEndian.Uint32(b[off+12+n:]) {
			return out, fmt.Errorf("bad data CRC at offset %d", off)
		}
		ev, err := decodeEvent(data)
		if err != nil {
			return out, fmt.Errorf("record at offset %d: %w", off, err)
		}
		out = append(out, ev)
		off += 12 + n + 4
	}
	return out, nil
}

type field struct {
	num  protowire.Number
	typ  protowire.Type
	v    uint64
	data []byte
}

func fields(b []byte) ([]field, error) {
	var out []field
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, errors.New("bad tag")
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			f.v, n = protowire.ConsumeFixed64(b)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(b)
			f.v = uint64(x)
		case protowire.BytesType:
			f.data, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, errors.New("bad field")
		}
		b = b[n:]
		out = append(out, f)
	}
	return out, nil
}

func decodeEvent(b []byte) (Event, error) {
	fs, err := fields(b)
	if err != nil {
		return Event{}, err
	}
	var ev Event
	for _, f := range fs {
		switch f.num {
		case 1:
			ev.WallTime = math.Float64frombits(f.v)
		case 2:
			ev.Step = int64(f.v)
		case 3:
			ev.FileVersion = string(f.data)
		case 5:
			sf, err := fields(f.data)
			if err != nil {
				return ev, err
			}
			for _, s := range sf {
				if s.num == 1 {
					v, err := decodeValue(s.data)
					if err != nil {
						return ev, err
					}
					ev.Values = append(ev.Values, v)
				}
			}
		case 7: // session_log (6 is the deprecated log_message)
			sl, _ := fields(f.data)
			for _, s := range sl {
				if s.num == 1 {
					ev.SessionLog = int(s.v)
				}
			}
		}
	}
	return ev, nil
}

func decodeValue(b []byte) (Value, error) {
	fs, err := fields(b)
	if err != nil {
		return Value{}, err
	}
	var v Value
	for _, f := range fs {
		switch f.num {
		case 1:
			v.Tag = string(f.data)
		case 2:
			x := math.Float32frombits(uint32(f.v))
			v.Simple = &x
		case 4:
			im, _ := fields(f.data)
			for _, i := range im {
				switch i.num {
				case 1:
					v.ImageH = int(i.v)
				case 2:
					v.ImageW = int(i.v)
				case 4:
					v.ImagePNG = i.data
				}
			}
		case 5:
			h, _ := fields(f.data)
			for _, i := range h {
				if i.num == 3 {
					v.HistoCount = math.Float64frombits(i.v)
				}
			}
		case 8:
			t, _ := fields(f.data)
			for _, i := range t {
				if i.num == 8 {
					v.Text = append(v.Text, string(i.data))
				}
			}
		case 9:
			md, _ := fields(f.data)
			for _, m := range md {
				if m.num == 1 {
					pd, _ := fields(m.data)
					for _, p := range pd {
						switch p.num {
						case 1:
							v.Plugin = string(p.data)
						case 2:
							v.PluginBytes = p.data
						}
					}
				}
			}
		}
	}
	return v, nil
}
