/* Fuzz target: Content-Type parsing + the multipart/form-data parser, and
 * the search/add-image parameter setters on every part it accepts.
 *
 * Input: the first line (up to '\n') is a Content-Type header value, the rest
 * the body. Invariants checked (abort() on violation): part data lies inside
 * the body, names are non-empty, part counts within the limits.
 */
#include "proto/proto.h"

#include "fuzz_proto_driver.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 256 ? size : 256);
    size_t hl = nl ? (size_t)(nl - data) : 0;
    char header[257];
    memcpy(header, data, hl);
    header[hl] = '\0';
    const uint8_t *body = nl ? nl + 1 : data;
    size_t blen = size - (size_t)(body - data);

    imago_error err;
    imago_error_clear(&err);
    imago_content_type ct;
    if (imago_content_type_parse(header, &ct, &err) != 0 || ct.media != IMAGO_MEDIA_MULTIPART)
        return 0;
    if (strlen(ct.boundary) == 0 || strlen(ct.boundary) > IMAGO_MULTIPART_BOUNDARY_MAX)
        abort();

    imago_multipart_limits lim = imago_multipart_limits_default();
    lim.max_parts = 8;
    lim.max_header_bytes = 512;
    imago_multipart *mp = NULL;
    imago_error_clear(&err);
    int rc = imago_multipart_parse(body, blen, ct.boundary, &lim, &mp, &err);
    if (rc != 0) {
        if (mp || err.code != rc || err.msg[0] == '\0')
            abort();
        return 0;
    }
    fuzz_accepted++;
    if (mp->n_parts < 1 || mp->n_parts > lim.max_parts)
        abort();
    imago_search_params sp = imago_search_params_default();
    imago_add_image_params ap = imago_add_image_params_default();
    for (int i = 0; i < mp->n_parts; i++) {
        const imago_multipart_part *p = &mp->parts[i];
        if (!p->name || !p->name[0])
            abort();
        if (p->data < body || p->len > blen || p->data + p->len > body + blen)
            abort();
        imago_error_clear(&err);
        imago_search_params_set(&sp, p->name, (const char *)p->data, p->len, &err);
        imago_error_clear(&err);
        imago_add_image_params_set(&ap, p->name, (const char *)p->data, p->len, &err);
        if (p->content_type) {
            imago_content_type pct;
            imago_error_clear(&err);
            imago_content_type_parse(p->content_type, &pct, &err);
        }
        imago_media_sniff(p->data, p->len);
    }
    if (sp.k < 1 || sp.k > IMAGO_SEARCH_K_MAX)
        abort();
    if (sp.has_bbox && !(sp.bbox[0] < sp.bbox[2] && sp.bbox[1] < sp.bbox[3]))
        abort();
    imago_search_params_clear(&sp);
    imago_add_image_params_clear(&ap);
    imago_multipart_free(mp);
    return 0;
}

#ifdef IMAGO_FUZZ_STANDALONE
static const fuzz_seed seeds[] = {
    {"multipart/form-data; boundary=XyZ\n"
     "--XyZ\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n5\r\n"
     "--XyZ\r\nContent-Disposition: form-data; name=\"bbox\"\r\n\r\n1,2,30,40\r\n"
     "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
     "Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0--XyZ\r\n--XyZ--\r\n",
     0},
    {"multipart/form-data; boundary=\"a b\"\n"
     "preamble\r\n--a b \t\r\ncontent-disposition: form-data;name=metadata\r\n\r\n"
     "{\"t\":[1,2,{\"x\":null}]}\r\n--a b\r\nContent-Disposition: form-data; name=external_id\r\n"
     "\r\nid-1\r\n--a b--epilogue",
     0},
    {"multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW\n"
     "------WebKitFormBoundary7MA4YWxkTrZu0gW\r\n"
     "Content-Disposition: form-data; name=\"filter\"\r\n\r\n{\"city\":\"Paris\"}\r\n"
     "------WebKitFormBoundary7MA4YWxkTrZu0gW\r\n"
     "Content-Disposition: form-data; name=\"qe\"\r\n\r\ntrue\r\n"
     "------WebKitFormBoundary7MA4YWxkTrZu0gW--\r\n",
     0},
    {"multipart/form-data; boundary=b\n--b\r\nContent-Disposition: form-data; name=\"a\\\"q\"\r\n"
     "X-A: 1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\r\n--b--",
     0},
};
static const char *const dict[] = {
    "\r\n",
    "--",
    "--XyZ",
    "\r\n--XyZ",
    "--XyZ--",
    "\r\n\r\n",
    "Content-Disposition: ",
    "form-data",
    "; name=",
    "; filename=\"",
    "\"",
    "Content-Type: ",
    "image/png",
    ";",
    "boundary=",
    "\\",
    " ",
    "\t",
    "\n",
    "k",
    "bbox",
    "qe_k",
    "1e9",
    ",",
    "{",
    "}",
};

int main(int argc, char **argv)
{
    return fuzz_main(argc, argv, seeds, sizeof seeds / sizeof seeds[0], dict,
                     sizeof dict / sizeof dict[0]);
}
#endif
