/* Thumbnails for the index: the image decoded at most IMAGO_THUMB_MAX_SIDE
 * pixels on its longer side (the engine's decoder: orientation, DCT scaling,
 * Lanczos resize) and re-encoded as a small JPEG (imago_image_encode_jpeg). */
#include "jobs.h"

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
    rc = imago_image_encode_jpeg(img, 85, jpeg, jpeg_len, err);
    imago_image_free(img);
    return rc;
}
