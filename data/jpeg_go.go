//go:build nolibjpeg

package data

// JPEGDecoder names the JPEG decoder this build uses: Go's image/jpeg, because
// the build was made with the nolibjpeg tag (jpeglib.h was missing).
const JPEGDecoder = "Go image/jpeg (built without libjpeg-turbo)"

// JPEGMatchesPIL is false: Go's decoder upsamples chroma and rounds its IDCT
// differently from libjpeg-turbo, so pixels are close to PIL's, not equal.
const JPEGMatchesPIL = false

func decodeJPEG(path string, b []byte) (*RGB, error) { return decodeJPEGGo(path, b) }
