/* Thumbnails for the index: the image decoded at most IMAGO_THUMB_MAX_SIDE
 * pixels on its longer side (the engine's decoder: orientation, DCT scaling,
 * Lanczos resize) and re-encoded as a small JPEG with TurboJPEG. */
#include "jobs.h"

#include <stdlib.h>
#include <string.h>

#include <turbojpeg.h>

int imago_thumb_make(const void *bytes, size_t len, const imago_decode_params *limits, int max_side,
                     void **jpeg, size_t *jpeg_len, imago_error *err)
{
    imago_decode_params dp = limits ? *limits : imago_decode_params_default();
    dp.max_side = max_side;
    dp.has_box = 0;
    imago_image *img = NULL;
    int rc = imago_image_decode(bytes, len, &dp, &img, err);
    if (rc != 0)
        return rc;
    tjhandle tj = tjInitCompress();
    if (!tj) {
        imago_image_free(img);
        return imago_error_set(err, IMAGO_ERR_BACKEND, "thumbnail: tjInitCompress: %s",
                               tjGetErrorStr2(NULL));
    }
    unsigned char *buf = NULL;
    unsigned long n = 0;
    if (tjCompress2(tj, img->rgb, img->width, 0, img->height, TJPF_RGB, &buf, &n, TJSAMP_420, 85,
                    0) != 0) {
        rc = imago_error_set(err, IMAGO_ERR_BACKEND, "thumbnail: tjCompress2: %s",
                             tjGetErrorStr2(tj));
    } else {
        /* hand back malloc'ed memory (tjFree must free TurboJPEG's buffer) */
        void *copy = malloc(n ? n : 1);
        if (!copy) {
            rc = imago_error_set(err, IMAGO_ERR_NOMEM, "thumbnail: out of memory");
        } else {
            memcpy(copy, buf, n);
            *jpeg = copy;
            *jpeg_len = n;
        }
    }
    tjFree(buf);
    tjDestroy(tj);
    imago_image_free(img);
    return rc;
}
