package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestFetchFromLocalServer downloads from a local HTTP server that drops the
// first connection half-way: the second call resumes with a Range request,
// the hash prefix is checked, and a third call does not touch the network.
func TestFetchFromLocalServer(t *testing.T) {
	payload := bytes.Repeat([]byte("inception weights "), 50000)
	sum := sha256.Sum256(payload)
	name := "inception_v3_google-" + hex.EncodeToString(sum[:])[:8] + ".pth"
	var calls, ranged atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
		}
		if n == 1 { // cut the first transfer short
			w.Header().Set("Content-Length", "900000")
			w.WriteHeader(http.StatusOK)
			w.Write(payload[:300000])
			return
		}
		http.ServeContent(w, r, name, time.Unix(0, 0), bytes.NewReader(payload))
	}))
	defer srv.Close()
	dir := t.TempDir()
	url := srv.URL + "/models/" + name
	if _, err := Fetch(url, dir, nil); err == nil || !strings.Contains(err.Error(), "by hand") {
		t.Fatalf("interrupted download: %v", err)
	}
	var bar bytes.Buffer
	p, err := Fetch(url, dir, &bar)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, payload) {
		t.Fatal("downloaded file differs")
	}
	if ranged.Load() != 1 {
		t.Errorf("%d Range requests, want 1 (resume)", ranged.Load())
	}
	if !strings.Contains(bar.String(), name) {
		t.Errorf("no progress bar: %q", bar.String())
	}
	before := calls.Load()
	if p2, err := Fetch(url, dir, nil); err != nil || p2 != p || calls.Load() != before {
		t.Errorf("cached file not reused: %v, %d new calls", err, calls.Load()-before)
	}
	// A file whose content does not match the hash in its name is refused.
	bad := srv.URL + "/models/inception_v3_google-deadbeef.pth"
	if _, err := Fetch(bad, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("hash mismatch: %v", err)
	}
	// Offline: one clear line naming the folder to put the file in.
	_, err = Fetch("http://127.0.0.1:1/inception_v3_google-0cc3c7bd.pth", filepath.Join(dir, "off"), nil)
	if err == nil || !strings.Contains(err.Error(), "put inception_v3_google-0cc3c7bd.pth into") ||
		strings.Contains(err.Error(), "\n") {
		t.Errorf("offline: %v", err)
	}
}
