package torch

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// ReadNpy reads a float32 little-endian, C-order .npy file (version 1-3).
func ReadNpy(path string) (data []float32, shape []int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil, fmt.Errorf("%s: does not exist", path)
		}
		return nil, nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	magic := make([]byte, 8)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic[:6]) != "\x93NUMPY" {
		return nil, nil, fmt.Errorf("%s: not a .npy file", path)
	}
	var hlen int
	if magic[6] == 1 {
		var n uint16
		binary.Read(r, binary.LittleEndian, &n)
		hlen = int(n)
	} else {
		var n uint32
		binary.Read(r, binary.LittleEndian, &n)
		hlen = int(n)
	}
	h := make([]byte, hlen)
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, nil, fmt.Errorf("%s: truncated header", path)
	}
	header := string(h)
	descr := regexp.MustCompile(`'descr':\s*'([^']+)'`).FindStringSubmatch(header)
	if descr == nil || (descr[1] != "<f4" && descr[1] != "|f4") {
		return nil, nil, fmt.Errorf("%s: dtype %v, want float32 ('<f4')", path, descr)
	}
	if strings.Contains(header, "'fortran_order': True") {
		return nil, nil, fmt.Errorf("%s: Fortran-order arrays are not supported (save with np.ascontiguousarray)", path)
	}
	sm := regexp.MustCompile(`'shape':\s*\(([^)]*)\)`).FindStringSubmatch(header)
	if sm == nil {
		return nil, nil, fmt.Errorf("%s: no shape in header", path)
	}
	n := int64(1)
	for _, s := range strings.Split(sm[1], ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		d, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: bad shape %q", path, sm[1])
		}
		shape = append(shape, d)
		n *= d
	}
	raw := make([]byte, 4*n)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, nil, fmt.Errorf("%s: truncated: want %d values of shape %v", path, n, shape)
	}
	data = make([]float32, n)
	for i := range data {
		data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
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
