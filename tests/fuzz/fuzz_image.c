/* Fuzz target for the image decoder: imago_image_probe + imago_image_decode
 * (with small limits, a box and resizing) on arbitrary bytes.
 *
 * Two ways to run it:
 *  - standalone (default build, meson test --suite fuzz): a deterministic
 *    driver mutates the tests/data image fixtures (seeded xorshift; bit
 *    flips, byte sets, interesting values, chunk copies/removals,
 *    truncations) for --iterations N or --seconds S, whichever comes first,
 *    and reports how the decodes ended.
 *  - under libFuzzer, built with clang:
 *      CC=clang CXX=clang++ meson setup build-fuzz -Db_sanitize=address,undefined \
 *          -Db_lundef=false
 *      ninja -C build-fuzz engine/fuzz_image_libfuzzer
 *      build-fuzz/engine/fuzz_image_libfuzzer -max_len=65536 tests/data/
 *    (engine/meson.build adds that target when the compiler is clang and
 *    accepts -fsanitize=fuzzer; it compiles this file with
 *    -DIMAGO_LIBFUZZER, which drops the driver below.)
 * Crashes, leaks and UB are what it looks for: run it in an ASan+UBSan build.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

static int decode_counts[16];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    imago_image_format fmt;
    int w, h;
    imago_error err;
    imago_error_clear(&err);
    (void)imago_image_probe(data, size, &fmt, &w, &h, &err);

    imago_decode_params p = imago_decode_params_default();
    p.max_bytes = 1 << 20;
    p.max_pixels = 1 << 20; /* 1 MP: keeps every iteration cheap */
    p.max_side = 48;
    for (int variant = 0; variant < 2; variant++) {
        if (variant == 1) {
            /* a box derived from the input, fractional, sometimes outside */
            p.has_box = 1;
            p.max_side = size & 1 ? 0 : 17;
            for (int i = 0; i < 4; i++)
                p.box[i] = size > (size_t)i ? (double)data[size - 1 - i] / 3.0 - 4.0 : 0;
        }
        imago_image *img = NULL;
        imago_error_clear(&err);
        int rc = imago_image_decode(data, size, &p, &img, &err);
        if (rc == 0) {
            /* touch every output byte so that ASan/MSan see bad memory */
            unsigned acc = 0;
            for (size_t i = 0; i < (size_t)img->width * img->height * 3; i++)
                acc += img->rgb[i];
            if (img->width <= 0 || img->height <= 0 || acc == 0xFFFFFFFFu)
                abort();
        } else if (img != NULL || err.code != rc || err.msg[0] == 0) {
            abort(); /* contract: no image and a message on error */
        }
        decode_counts[-rc & 15]++;
        imago_image_free(img);
    }
    return 0;
}

#ifndef IMAGO_LIBFUZZER
#include <time.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

typedef struct seed {
    uint8_t *data;
    size_t len;
} seed;

static void mutate(uint8_t *d, size_t *len, size_t cap, const seed *seeds, int nseeds)
{
    int n = 1 + (int)(rnd() % 4);
    for (int m = 0; m < n && *len > 0; m++) {
        size_t pos = rnd() % *len;
        switch (rnd() % 8) {
        case 0: d[pos] ^= (uint8_t)(1u << (rnd() % 8)); break;
        case 1: d[pos] = (uint8_t)rnd(); break;
        case 2: { /* interesting values, 16-bit big-endian (JPEG/PNG sizes) */
            static const uint16_t v[] = {0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0xfffe, 0x8000};
            uint16_t x = v[rnd() % (sizeof v / sizeof v[0])];
            if (pos + 1 < *len) {
                d[pos] = (uint8_t)(x >> 8);
                d[pos + 1] = (uint8_t)x;
            }
            break;
        }
        case 3: *len = pos + 1; break; /* truncate */
        case 4: { /* remove a chunk */
            size_t k = 1 + rnd() % 64;
            if (pos + k < *len) {
                memmove(d + pos, d + pos + k, *len - pos - k);
                *len -= k;
            }
            break;
        }
        case 5: { /* duplicate a chunk */
            size_t k = 1 + rnd() % 64;
            if (pos + k <= *len && *len + k <= cap) {
                memmove(d + pos + k, d + pos, *len - pos);
                *len += k;
            }
            break;
        }
        case 6: { /* splice in bytes from another seed */
            const seed *s = &seeds[rnd() % (uint64_t)nseeds];
            size_t k = 1 + rnd() % 32;
            if (s->len > k && pos + k <= *len) {
                size_t from = rnd() % (s->len - k);
                memcpy(d + pos, s->data + from, k);
            }
            break;
        }
        default: d[pos] = (uint8_t)(d[pos] + 1 + rnd() % 3); break;
        }
    }
}

int main(int argc, char **argv)
{
    long iterations = 3000;
    double seconds = 60;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc)
            iterations = atol(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            rng_state ^= strtoull(argv[++i], NULL, 0) * 0xD1B54A32D192ED03ull;
        else
            dir = argv[i];
    }
    char path[4096];
    if (!dir) {
        const char *root = getenv("IMAGO_SOURCE_ROOT");
        snprintf(path, sizeof path, "%s/tests/data", root ? root : ".");
        dir = path;
    }
    seed seeds[128];
    int nseeds = 0;
    DIR *dh = opendir(dir);
    if (!dh) {
        fprintf(stderr, "fuzz_image: cannot open %s\n", dir);
        return 77;
    }
    char *names[128];
    int nnames = 0;
    struct dirent *de;
    while ((de = readdir(dh)) && nnames < 128) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "img_", 4) == 0 && l > 4 &&
            (strcmp(de->d_name + l - 4, ".jpg") == 0 || strcmp(de->d_name + l - 4, ".png") == 0))
            names[nnames++] = strdup(de->d_name);
    }
    closedir(dh);
    /* sorted, so that a seed gives the same run on every machine */
    for (int i = 0; i < nnames; i++)
        for (int j = i + 1; j < nnames; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    for (int i = 0; i < nnames; i++) {
        char fp[8192];
        snprintf(fp, sizeof fp, "%s/%s", dir, names[i]);
        free(names[i]);
        FILE *f = fopen(fp, "rb");
        if (!f)
            continue;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        if (n <= 0 || n > (1 << 20)) {
            fclose(f);
            continue;
        }
        seeds[nseeds].data = malloc((size_t)n);
        seeds[nseeds].len = fread(seeds[nseeds].data, 1, (size_t)n, f);
        fclose(f);
        nseeds++;
    }
    if (nseeds == 0) {
        fprintf(stderr, "fuzz_image: no img_*.jpg/png seeds in %s\n", dir);
        return 77;
    }
    size_t cap = 0;
    for (int i = 0; i < nseeds; i++)
        cap = seeds[i].len > cap ? seeds[i].len : cap;
    cap += 4096;
    uint8_t *buf = malloc(cap);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long it;
    for (it = 0; it < iterations; it++) {
        /* the seeds themselves first, then mutations */
        const seed *s = &seeds[it < nseeds ? it : (long)(rnd() % (uint64_t)nseeds)];
        size_t len = s->len;
        memcpy(buf, s->data, len);
        if (it >= nseeds)
            mutate(buf, &len, cap, seeds, nseeds);
        /* exact-size copy so that ASan catches reads past the end */
        uint8_t *in = malloc(len ? len : 1);
        memcpy(in, buf, len);
        LLVMFuzzerTestOneInput(in, len);
        free(in);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec) >
            seconds)
            break;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("fuzz_image: %ld iterations over %d seeds in %.1f s; decodes: ok %d, format %d, "
           "too_large %d, invalid %d, unsupported %d, nomem %d\n",
           it, nseeds,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
           decode_counts[0], decode_counts[-IMAGO_ERR_FORMAT], decode_counts[-IMAGO_ERR_TOO_LARGE],
           decode_counts[-IMAGO_ERR_INVALID], decode_counts[-IMAGO_ERR_UNSUPPORTED],
           decode_counts[-IMAGO_ERR_NOMEM]);
    for (int i = 0; i < nseeds; i++)
        free(seeds[i].data);
    free(buf);
    /* the unmutated seeds must include successful decodes */
    return decode_counts[0] > 0 ? 0 : 1;
}
#endif
