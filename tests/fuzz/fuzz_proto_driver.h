/* Standalone driver for the proto/ fuzz targets (fuzz_multipart.c,
 * fuzz_json.c): when built with -DIMAGO_FUZZ_STANDALONE it provides main(),
 * which runs LLVMFuzzerTestOneInput on a built-in seed corpus and then on a
 * bounded number of deterministic mutations of it (xorshift64, fixed seed),
 * and prints TAP. Files named on the command line are replayed instead
 * (a crash reproducer). Without the macro the file is a plain libFuzzer
 * target, e.g. (from the source root, BUILD = a configured build dir):
 *
 *   F="-std=c11 -D_GNU_SOURCE -g -O1 -fno-sanitize-recover=all -Iproto -Icommon -Itests -IBUILD"
 *   clang $F -fsanitize=fuzzer-no-link,address,undefined -c PROTO_AND_COMMON_SOURCES
 *   clang $F -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_multipart.c OBJECTS \
 *         -ljansson -lm -lpthread -o lf_multipart
 *   ./lf_multipart -max_total_time=60 -max_len=4096 CORPUS_DIR
 *
 * where PROTO_AND_COMMON_SOURCES are the .c files of proto/ and common/.
 *
 * The including file defines: fuzz_seeds[] / fuzz_n_seeds (NUL-free or with
 * explicit lengths), fuzz_dict[] / fuzz_n_dict (tokens spliced in by the
 * mutator), and counts accepted inputs in fuzz_accepted.
 */
#ifndef IMAGO_FUZZ_PROTO_DRIVER_H
#define IMAGO_FUZZ_PROTO_DRIVER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_seed {
    const char *data;
    size_t len; /* 0 = strlen(data) */
} fuzz_seed;

static long fuzz_accepted; /* inputs the target parsed successfully */

#ifdef IMAGO_FUZZ_STANDALONE

#include "tap.h"

static uint64_t fuzz_rng = 0x9E3779B97F4A7C15ull;

static uint64_t fuzz_next(void)
{
    fuzz_rng ^= fuzz_rng << 13;
    fuzz_rng ^= fuzz_rng >> 7;
    fuzz_rng ^= fuzz_rng << 17;
    return fuzz_rng;
}

static size_t fuzz_below(size_t n)
{
    return n ? (size_t)(fuzz_next() % n) : 0;
}

#define FUZZ_MAX 8192

/* One random edit of buf (len bytes, capacity FUZZ_MAX); returns the new length. */
static size_t fuzz_mutate(uint8_t *buf, size_t len, const char *const *dict, size_t n_dict)
{
    switch (fuzz_below(8)) {
    case 0: /* flip a bit */
        if (len)
            buf[fuzz_below(len)] ^= (uint8_t)(1u << fuzz_below(8));
        return len;
    case 1: /* set a byte to an interesting value */
        if (len) {
            static const uint8_t v[] = {0,    '\r', '\n', '-', '"', ';', '=', '\\', 0xFF,
                                        0x80, ' ',  '{',  '}', '[', ']', ',', ':'};
            buf[fuzz_below(len)] = v[fuzz_below(sizeof v)];
        }
        return len;
    case 2: /* delete a range */
        if (len) {
            size_t at = fuzz_below(len), n = 1 + fuzz_below(len - at < 16 ? len - at : 16);
            memmove(buf + at, buf + at + n, len - at - n);
            return len - n;
        }
        return len;
    case 3: /* truncate */ return fuzz_below(len + 1);
    case 4: /* duplicate a range */ {
        if (!len)
            return len;
        size_t at = fuzz_below(len), n = 1 + fuzz_below(len - at < 64 ? len - at : 64);
        if (len + n > FUZZ_MAX)
            return len;
        size_t to = fuzz_below(len + 1);
        uint8_t tmp[64];
        memcpy(tmp, buf + at, n);
        memmove(buf + to + n, buf + to, len - to);
        memcpy(buf + to, tmp, n);
        return len + n;
    }
    default: /* splice a dictionary token */ {
        const char *tok = dict[fuzz_below(n_dict)];
        size_t n = strlen(tok);
        if (len + n > FUZZ_MAX)
            return len;
        size_t to = fuzz_below(len + 1);
        if (fuzz_below(2) && to + n <= len) {
            memcpy(buf + to, tok, n); /* overwrite */
            return len;
        }
        memmove(buf + to + n, buf + to, len - to);
        memcpy(buf + to, tok, n);
        return len + n;
    }
    }
}

/* Runs the target on an exact-size heap copy so over-reads hit ASan. */
static void fuzz_run(const uint8_t *data, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (len)
        memcpy(copy, data, len);
    LLVMFuzzerTestOneInput(copy, len);
    free(copy);
}

static int fuzz_main(int argc, char **argv, const fuzz_seed *seeds, size_t n_seeds,
                     const char *const *dict, size_t n_dict)
{
    long iterations = 20000;
    int replay = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
            iterations = strtol(argv[++i], NULL, 10);
        } else {
            FILE *f = fopen(argv[i], "rb");
            if (!f) {
                fprintf(stderr, "cannot open %s\n", argv[i]);
                return 2;
            }
            static uint8_t in[1 << 20];
            size_t n = fread(in, 1, sizeof in, f);
            fclose(f);
            fuzz_run(in, n);
            replay++;
        }
    }
    if (replay) {
        ok(1, "replayed %d file(s) without a crash", replay);
        return tap_done();
    }
    for (size_t s = 0; s < n_seeds; s++)
        fuzz_run((const uint8_t *)seeds[s].data,
                 seeds[s].len ? seeds[s].len : strlen(seeds[s].data));
    long seeds_accepted = fuzz_accepted;
    ok(seeds_accepted > 0, "seed corpus runs; %ld of %zu seeds accepted", seeds_accepted, n_seeds);
    static uint8_t buf[FUZZ_MAX];
    fuzz_accepted = 0;
    for (long it = 0; it < iterations; it++) {
        const fuzz_seed *sd = &seeds[fuzz_below(n_seeds)];
        size_t len = sd->len ? sd->len : strlen(sd->data);
        if (len > FUZZ_MAX)
            len = FUZZ_MAX;
        memcpy(buf, sd->data, len);
        size_t edits = 1 + fuzz_below(4);
        for (size_t e = 0; e < edits; e++)
            len = fuzz_mutate(buf, len, dict, n_dict);
        fuzz_run(buf, len);
    }
    /* both outcomes must occur, or the mutator is not exercising the parser */
    ok(fuzz_accepted > 0 && fuzz_accepted < iterations,
       "%ld mutated inputs without a crash; %ld accepted, %ld refused", iterations, fuzz_accepted,
       iterations - fuzz_accepted);
    return tap_done();
}

#endif /* IMAGO_FUZZ_STANDALONE */
#endif
