package torch

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// ReadNpy reads a float32 little-endian, C-order .npy file (version 1-3).
func ReadNpy(path string) (data []float32, shape []int64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil, fmt.Errorf("%s: does not exist", path)
		}
		return nil, nil, err
	}
	data, shape, err = ParseNpy(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, shape, nil
}

var (
	npyDescr = regexp.MustCompile(`'descr':\s*'([^']+)'`)
	npyShape = regexp.MustCompile(`'shape':\s*\(([^)]*)\)`)
)

// ParseNpy decodes the bytes of a float32 .npy file. Whatever the bytes, it
// returns an error rather than panicking or allocating more than they hold.
func ParseNpy(b []byte) (data []float32, shape []int64, err error) {
	if len(b) < 10 || string(b[:6]) != "\x93NUMPY" {
		return nil, nil, fmt.Errorf("not a .npy file")
	}
	var hlen, off int
	switch b[6] {
	case 1:
		hlen, off = int(binary.LittleEndian.Uint16(b[8:])), 10
	case 2, 3:
		if len(b) < 12 {
			return nil, nil, fmt.Errorf("truncated header")
		}
		hlen, off = int(binary.LittleEndian.Uint32(b[8:])), 12
	default:
		return nil, nil, fmt.Errorf(".npy version %d.%d is not supported (1-3 are)", b[6], b[7])
	}
	if hlen > len(b)-off {
		return nil, nil, fmt.Errorf("truncated header (%d bytes announced, %d present)", hlen, len(b)-off)
	}
	header := string(b[off : off+hlen])
	body := b[off+hlen:]
	descr := npyDescr.FindStringSubmatch(header)
	if descr == nil || (descr[1] != "<f4" && descr[1] != "|f4") {
		return nil, nil, fmt.Errorf("dtype %v, want float32 ('<f4')", descr)
	}
	if strings.Contains(header, "'fortran_order': True") {
		return nil, nil, fmt.Errorf("Fortran-order arrays are not supported (save with np.ascontiguousarray)")
	}
	sm := npyShape.FindStringSubmatch(header)
	if sm == nil {
		return nil, nil, fmt.Errorf("no shape in header")
	}
	n := int64(1)
	for _, s := range strings.Split(sm[1], ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		d, err := strconv.ParseInt(s, 10, 64)
		if err != nil || d < 0 {
			return nil, nil, fmt.Errorf("bad shape (%s)", sm[1])
		}
		if d > 0 && n > int64(len(body))/4/d {
			return nil, nil, fmt.Errorf(
				"truncated: shape (%s) needs more than the %d bytes of data present",
				sm[1],
				len(body),
			)
		}
		shape = append(shape, d)
		n *= d
	}
	if int64(len(body)) < 4*n {
		return nil, nil, fmt.Errorf("truncated: want %d values of shape %v, %d bytes present", n, shape, len(body))
	}
	data = make([]float32, n)
	for i := range data {
		data[i] = math.Float32frombits(binary.LittleEndian.Uint32(body[4*i:]))
	}
	return data, shape, nil
}

// WriteNpy writes float32 values of the given shape as a version-1 .npy file.
func WriteNpy(path string, data []float32, shape []int64) error {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.FormatInt(d, 10)
	}
	sh := strings.Join(dims, ", ")
	if len(shape) == 1 {
		sh += ","
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", sh)
	pad := 64 - (10+len(header)+1)%64
	header += strings.Repeat(" ", pad%64) + "\n"
	buf := make([]byte, 0, 10+len(header)+4*len(data))
	buf = append(buf, "\x93NUMPY\x01\x00"...)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(header)))
	buf = append(buf, header...)
	for _, v := range data {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
