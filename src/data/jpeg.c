/* JPEG decoding to RGB with libjpeg(-turbo)'s classic API: the same library and
 * defaults PIL uses (islow IDCT, fancy upsampling), so decoded bytes match PIL's.
 * libjpeg reports fatal errors by longjmp out of our error handler; warnings are
 * collected, and a premature end of data (a truncated file) counts as an error. */
#include "data/image_folder.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "core/status.h"

typedef struct error_manager {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;
    char message[JMSG_LENGTH_MAX];
} error_manager;

static void on_error(j_common_ptr cinfo) {
    error_manager *e = (error_manager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
}

/* Warnings (level -1) are kept quiet; corrupt-data warnings leave a decodable
 * image, as PIL accepts, but running out of data means the file is truncated. */
static void on_message(j_common_ptr cinfo, int level) {
    error_manager *e = (error_manager *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
}

void st_rgb_image_free(st_rgb_image *img) {
    if (!img) return;
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* PIL's CMYK -> RGB (Convert.c cmyk2rgb), after undoing the Adobe inversion
 * PIL assumes for every CMYK JPEG: raw bytes are 255 - ink. */
static void cmyk_row_to_rgb(const uint8_t *raw, int width, uint8_t *rgb) {
    for (int x = 0; x < width; x++, raw += 4, rgb += 3) {
        int nk = raw[3]; /* 255 - K */
        for (int c = 0; c < 3; c++) {
            int ink = 255 - raw[c];
            int t = ink * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            rgb[c] = (uint8_t)(v < 0 ? 0 : v);
        }
    }
}

st_status st_jpeg_decode(const uint8_t *data, size_t size, const char *name, st_rgb_image *out) {
    if (!data || !out) return st_fail(ST_ERR_ARGUMENT, "st_jpeg_decode: NULL input");
    out->width = out->height = 0;
    if (size < 4 || data[0] != 0xFF || data[1] != 0xD8)
        return st_fail(ST_ERR_FORMAT, "%s: not a JPEG file (no start-of-image marker)", name);
    struct jpeg_decompress_struct cinfo;
    error_manager err;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error;
    err.pub.emit_message = on_message;
    /* Everything below that a longjmp must see lives in memory (cinfo, err, *out). */
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        out->width = out->height = 0;
        return st_fail(ST_ERR_FORMAT, "%s: corrupt JPEG (%s)", name, err.message);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.mem->max_memory_to_use = ST_JPEG_MAX_WORK_BYTES;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    uint64_t pixels = (uint64_t)cinfo.image_width * cinfo.image_height;
    if (pixels == 0 || pixels > ST_IMAGE_MAX_PIXELS) {
        unsigned w = cinfo.image_width, h = cinfo.image_height;
        jpeg_destroy_decompress(&cinfo);
        return st_fail(ST_ERR_FORMAT, "%s: declared size %ux%u is outside the limit of %u pixels", name, w, h,
                       ST_IMAGE_MAX_PIXELS);
    }
    int cmyk = 0;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo.out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo.out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default: {
        int space = (int)cinfo.jpeg_color_space;
        jpeg_destroy_decompress(&cinfo);
        return st_fail(ST_ERR_FORMAT, "%s: unsupported JPEG colour space %d", name, space);
    }
    }
    jpeg_start_decompress(&cinfo);
    size_t width = cinfo.output_width, height = cinfo.output_height, need = width * height * 3;
    if (cinfo.output_components != (cmyk ? 4 : 3)) {
        int comps = cinfo.output_components;
        jpeg_destroy_decompress(&cinfo);
        return st_fail(ST_ERR_FORMAT, "%s: unexpected %d output components", name, comps);
    }
    if (out->capacity < need) {
        uint8_t *grown = realloc(out->pixels, need);
        if (!grown) {
            jpeg_destroy_decompress(&cinfo);
            return st_fail(ST_ERR_NOMEM, "%s: out of memory for a %zux%zu image", name, width, height);
        }
        out->pixels = grown;
        out->capacity = need;
    }
    /* CMYK rows go through a row buffer in libjpeg's pool (freed with cinfo). */
    JSAMPARRAY cmyk_row = cmyk ? (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, (JDIMENSION)width * 4, 1)
                               : NULL;
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = out->pixels + (size_t)cinfo.output_scanline * width * 3;
        JSAMPROW row = cmyk ? cmyk_row[0] : dst;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) break;
        if (cmyk) cmyk_row_to_rgb(row, (int)width, dst);
        if (err.truncated) break;
    }
    if (!err.truncated) jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    if (err.truncated) return st_fail(ST_ERR_FORMAT, "%s: truncated JPEG (premature end of data)", name);
    out->width = (int)width;
    out->height = (int)height;
    return ST_OK;
}
