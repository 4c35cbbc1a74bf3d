/* EXIF orientation: a small, bounds-checked reader for the Orientation tag
 * (0x0112) of IFD0 in a JPEG's first APP1 "Exif" segment (both TIFF byte
 * orders), and the 8 transposes that PIL.ImageOps.exif_transpose applies.
 * Anything malformed means "no orientation" (1): it never fails a decode.
 */
#include "image_int.h"

#include <string.h>

static unsigned rd16(const uint8_t *p, int be)
{
    return be ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static uint32_t rd32(const uint8_t *p, int be)
{
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
              : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* Orientation from a TIFF structure t of n bytes; 1 when absent/invalid. */
static int tiff_orientation(const uint8_t *t, size_t n)
{
    if (n < 8)
        return 1;
    int be;
    if (t[0] == 'I' && t[1] == 'I')
        be = 0;
    else if (t[0] == 'M' && t[1] == 'M')
        be = 1;
    else
        return 1;
    if (rd16(t + 2, be) != 42)
        return 1;
    uint32_t ifd = rd32(t + 4, be);
    if (ifd > n || n - ifd < 2)
        return 1;
    unsigned count = rd16(t + ifd, be);
    size_t pos = (size_t)ifd + 2;
    for (unsigned i = 0; i < count; i++, pos += 12) {
        if (pos > n || n - pos < 12)
            return 1;
        const uint8_t *e = t + pos;
        if (rd16(e, be) != 0x0112)
            continue;
        unsigned type = rd16(e + 2, be);
        uint32_t cnt = rd32(e + 4, be);
        if (cnt != 1)
            return 1;
        unsigned v;
        if (type == 3) /* SHORT */
            v = rd16(e + 8, be);
        else if (type == 4) /* LONG */
            v = rd32(e + 8, be) > 8 ? 0 : (unsigned)rd32(e + 8, be);
        else
            return 1;
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

int imago_jpeg_exif_orientation(const uint8_t *d, size_t len)
{
    if (len < 4 || d[0] != 0xFF || d[1] != 0xD8)
        return 1;
    size_t pos = 2;
    while (pos < len) {
        if (d[pos] != 0xFF)
            return 1; /* not at a marker: give up (malformed) */
        while (pos < len && d[pos] == 0xFF)
            pos++; /* fill bytes */
        if (pos >= len)
            return 1;
        uint8_t m = d[pos++];
        if (m == 0xD9 || m == 0xDA)
            return 1; /* EOI / start of scan: no EXIF before the image data */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7))
            continue; /* standalone markers */
        if (len - pos < 2)
            return 1;
        size_t seglen = (size_t)d[pos] << 8 | d[pos + 1];
        if (seglen < 2 || seglen > len - pos)
            return 1;
        const uint8_t *s = d + pos + 2;
        size_t n = seglen - 2;
        /* Like Pillow: the first APP1 that starts with "Exif\0" is the one. */
        if (m == 0xE1 && n >= 5 && memcmp(s, "Exif", 5) == 0) {
            if (n < 6 || s[5] != 0)
                return 1;
            return tiff_orientation(s + 6, n - 6);
        }
        pos += seglen;
    }
    return 1;
}

/* dst(x, y) for an output of size ow x oh takes src(sx, sy) with
 * (sx, sy) = origin + x * dx + y * dy, expressed as byte steps. */
void imago_image_orient(const uint8_t *src, int w, int h, int o, uint8_t *dst)
{
    const ptrdiff_t px = 3, row = (ptrdiff_t)w * 3;
    int ow = o >= 5 ? h : w, oh = o >= 5 ? w : h;
    ptrdiff_t start, stepx, stepy;
    switch (o) {
    case 2: /* mirror horizontally */
        start = (ptrdiff_t)(w - 1) * px, stepx = -px, stepy = row;
        break;
    case 3: /* rotate 180 */
        start = (ptrdiff_t)(h - 1) * row + (ptrdiff_t)(w - 1) * px, stepx = -px, stepy = -row;
        break;
    case 4: /* mirror vertically */
        start = (ptrdiff_t)(h - 1) * row, stepx = px, stepy = -row;
        break;
    case 5: /* transpose: dst(x, y) = src(y, x) */
        start = 0, stepx = row, stepy = px;
        break;
    case 6: /* rotate 90 clockwise: dst(x, y) = src(y, h - 1 - x) */
        start = (ptrdiff_t)(h - 1) * row, stepx = -row, stepy = px;
        break;
    case 7: /* transverse: dst(x, y) = src(w - 1 - y, h - 1 - x) */
        start = (ptrdiff_t)(h - 1) * row + (ptrdiff_t)(w - 1) * px, stepx = -row, stepy = -px;
        break;
    case 8: /* rotate 90 counter-clockwise: dst(x, y) = src(w - 1 - y, x) */
        start = (ptrdiff_t)(w - 1) * px, stepx = row, stepy = -px;
        break;
    default: memcpy(dst, src, (size_t)w * (size_t)h * 3); return;
    }
    /* Blocked so that both the reads and the writes stay in cache for the
     * transposing cases. */
    enum { B = 64 };
    for (int by = 0; by < oh; by += B) {
        int ey = by + B < oh ? by + B : oh;
        for (int bx = 0; bx < ow; bx += B) {
            int ex = bx + B < ow ? bx + B : ow;
            for (int y = by; y < ey; y++) {
                const uint8_t *s = src + start + (ptrdiff_t)y * stepy + (ptrdiff_t)bx * stepx;
                uint8_t *q = dst + ((size_t)y * (size_t)ow + (size_t)bx) * 3;
                for (int x = bx; x < ex; x++, s += stepx, q += 3) {
                    q[0] = s[0];
                    q[1] = s[1];
                    q[2] = s[2];
                }
            }
        }
    }
}
