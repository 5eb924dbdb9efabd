package tensorboard

import (
	"encoding/binary"
	"os"
	"testing"
)

// FuzzParseEvents: whatever the bytes, the event-file reader returns events
// and perhaps an error; it never panics (a crafted record length, such as one
// that wraps to a negative int, is a cut record).
func FuzzParseEvents(f *testing.F) {
	w, err := NewWriter(f.TempDir(), -1)
	if err != nil {
		f.Fatal(err)
	}
	w.Scalar("loss", 1, 0.5)
	w.Text("samples", 1, "| a | b |")
	w.Histogram("h", 1, []float64{1, 2, 3})
	w.Close()
	b, err := os.ReadFile(w.Path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)-3])
	crafted := make([]byte, 16)
	binary.LittleEndian.PutUint64(crafted, 1<<63+5) // a length that is negative as an int
	binary.LittleEndian.PutUint32(crafted[8:], MaskedCRC(crafted[:8]))
	f.Add(crafted)
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := ParseEvents(b)
		if err == nil && len(b) >= 16 && len(evs) == 0 && binary.LittleEndian.Uint64(b) <= uint64(len(b)-16) &&
			MaskedCRC(b[:8]) == binary.LittleEndian.Uint32(b[8:]) {
			// a whole first record with good CRCs must decode or be an error
			n := int(binary.LittleEndian.Uint64(b))
			if MaskedCRC(b[12:12+n]) == binary.LittleEndian.Uint32(b[12+n:]) {
				t.Fatalf("a whole first record gave neither an event nor an error")
			}
		}
	})
}
