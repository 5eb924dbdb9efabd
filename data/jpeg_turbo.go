//go:build !nolibjpeg

package data

// JPEG decoding through libjpeg-turbo's libjpeg API, set up as Pillow's
// JpegDecode.c sets it up (Pillow and so torchvision read images this way):
// the library's defaults (islow IDCT, fancy chroma upsampling), the output
// colour space picked from the number of components as JpegImagePlugin picks
// its mode (1: L, 3: RGB, 4: CMYK with Adobe's inverted convention), and then
// Image.convert("RGB") for L and CMYK. Warnings are ignored as Pillow ignores
// them, except running out of data before the last row, which Pillow reports
// as a truncated file. Built unless the nolibjpeg tag is given (the Makefile
// gives it when jpeglib.h is missing); jpeg_go.go is the pure-Go fallback.

/*
#cgo LDFLAGS: -ljpeg
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

#define CG_STR2(x) #x
#define CG_STR(x) CG_STR2(x)

typedef struct {
	struct jpeg_decompress_struct cinfo;
	struct jpeg_error_mgr jerr;
	jmp_buf jmp;
	char msg[JMSG_LENGTH_MAX];
	int created, finishing;
	JSAMPROW row; // one row of gray or CMYK samples
} cg_jpeg;

static void cg_error_exit(j_common_ptr c) {
	cg_jpeg *j = (cg_jpeg *)c->client_data;
	(*c->err->format_message)(c, j->msg);
	longjmp(j->jmp, 1);
}

static void cg_emit(j_common_ptr c, int level) {
	cg_jpeg *j = (cg_jpeg *)c->client_data;
	if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF && !j->finishing) {
		snprintf(j->msg, sizeof j->msg, "the data ends before the last row (truncated file)");
		longjmp(j->jmp, 1);
	}
}

static cg_jpeg *cg_new(void) { return (cg_jpeg *)calloc(1, sizeof(cg_jpeg)); }

static void cg_free(cg_jpeg *j) {
	if (j == NULL) return;
	if (j->created) jpeg_destroy_decompress(&j->cinfo);
	free(j->row);
	free(j);
}

static const char *cg_msg(cg_jpeg *j) { return j->msg; }

static const char *cg_version(void) {
#ifdef LIBJPEG_TURBO_VERSION
	return "libjpeg-turbo " CG_STR(LIBJPEG_TURBO_VERSION);
#else
	return "libjpeg (not turbo)";
#endif
}

// cg_header reads the headers of the n bytes at buf (which must stay put until
// cg_free) and reports the size and the number of components.
static int cg_header(cg_jpeg *j, const unsigned char *buf, unsigned long n, int *w, int *h, int *comps) {
	if (setjmp(j->jmp)) return -1;
	j->cinfo.client_data = j;
	j->cinfo.err = jpeg_std_error(&j->jerr);
	j->jerr.error_exit = cg_error_exit;
	j->jerr.emit_message = cg_emit;
	jpeg_create_decompress(&j->cinfo);
	j->created = 1;
	jpeg_mem_src(&j->cinfo, buf, n);
	jpeg_read_header(&j->cinfo, TRUE);
	*w = j->cinfo.image_width;
	*h = j->cinfo.image_height;
	*comps = j->cinfo.num_components;
	switch (j->cinfo.num_components) {
	case 1: j->cinfo.out_color_space = JCS_GRAYSCALE; break;
	case 3: j->cinfo.out_color_space = JCS_RGB; break;
	case 4: j->cinfo.out_color_space = JCS_CMYK; break;
	default:
		snprintf(j->msg, sizeof j->msg, "cannot handle %d-layer images", j->cinfo.num_components);
		return -1;
	}
	return 0;
}

// Pillow's MULDIV255 and cmyk2rgb (Convert.c), on the inverted samples its
// "CMYK;I" unpacker makes of an Adobe CMYK JPEG.
static inline unsigned char cg_cmyk(int v, int nk) {
	int tmp = v * nk + 128;
	int r = nk - (((tmp >> 8) + tmp) >> 8);
	return r < 0 ? 0 : (r > 255 ? 255 : r);
}

// cg_decode writes the picture as RGB, 3 bytes a pixel, into dst.
static int cg_decode(cg_jpeg *j, unsigned char *dst) {
	if (setjmp(j->jmp)) return -1;
	jpeg_start_decompress(&j->cinfo);
	int w = j->cinfo.output_width, comps = j->cinfo.output_components;
	if (comps != 3) {
		j->row = (JSAMPROW)malloc((size_t)w * comps);
		if (j->row == NULL) {
			snprintf(j->msg, sizeof j->msg, "out of memory");
			return -1;
		}
	}
	while (j->cinfo.output_scanline < j->cinfo.output_height) {
		unsigned char *out = dst + (size_t)j->cinfo.output_scanline * w * 3;
		if (comps == 3) {
			JSAMPROW r = out;
			jpeg_read_scanlines(&j->cinfo, &r, 1);
			continue;
		}
		jpeg_read_scanlines(&j->cinfo, &j->row, 1);
		const unsigned char *in = j->row;
		if (comps == 1) {
			for (int x = 0; x < w; x++, out += 3) out[0] = out[1] = out[2] = in[x];
		} else {
			for (int x = 0; x < w; x++, out += 3, in += 4) {
				// Pillow's k is 255 - in[3], so its nk = 255 - k is in[3].
				int nk = in[3];
				out[0] = cg_cmyk(255 - in[0], nk);
				out[1] = cg_cmyk(255 - in[1], nk);
				out[2] = cg_cmyk(255 - in[2], nk);
			}
		}
	}
	j->finishing = 1; // Pillow accepts a file whose rows are all there (a missing EOI)
	jpeg_finish_decompress(&j->cinfo);
	return 0;
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// JPEGDecoder names the JPEG decoder this build uses.
var JPEGDecoder = C.GoString(C.cg_version())

// JPEGMatchesPIL is true when JPEG pixels are decoded as PIL decodes them.
const JPEGMatchesPIL = true

func decodeJPEG(path string, b []byte) (*RGB, error) {
	j := C.cg_new()
	if j == nil {
		return nil, fmt.Errorf("image %s: out of memory", path)
	}
	defer C.cg_free(j)
	var pin runtime.Pinner // libjpeg keeps reading b between the two calls
	pin.Pin(&b[0])
	defer pin.Unpin()
	var w, h, comps C.int
	if C.cg_header(j, (*C.uchar)(unsafe.Pointer(&b[0])), C.ulong(len(b)), &w, &h, &comps) != 0 {
		return nil, fmt.Errorf("image %s: corrupt or truncated jpeg: %s", path, C.GoString(C.cg_msg(j)))
	}
	if err := checkPixels(path, int(w), int(h)); err != nil {
		return nil, err
	}
	m := &RGB{W: int(w), H: int(h), Pix: make([]uint8, 3*int(w)*int(h))}
	if C.cg_decode(j, (*C.uchar)(unsafe.Pointer(&m.Pix[0]))) != 0 {
		return nil, fmt.Errorf("image %s: corrupt or truncated jpeg: %s", path, C.GoString(C.cg_msg(j)))
	}
	return m, nil
}
