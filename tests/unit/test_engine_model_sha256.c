/* Unit tests for engine/sha256.c: FIPS 180-4 vectors on both code paths
 * (portable and SHA-NI), streaming in odd-sized pieces, and the file hash
 * against the system's sha256sum. */
#include "engine/model.h"
#include "tap.h"
#include "test_engine_model_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex_of(const void *data, size_t len, char hex[65])
{
    uint8_t d[32];
    imago_sha256(data, len, d);
    imago_sha256_hex(d, hex);
}

static void vectors(const char *path)
{
    char hex[65];
    hex_of("", 0, hex);
    is_str(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
           "%s: empty string", path);
    hex_of("abc", 3, hex);
    is_str(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "%s: abc",
           path);
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(two, strlen(two), hex);
    is_str(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
           "%s: 448-bit message (two blocks after padding)", path);
    size_t n = 1000000;
    char *a = malloc(n);
    memset(a, 'a', n);
    hex_of(a, n, hex);
    is_str(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
           "%s: one million 'a'", path);
    /* the same, streamed in pieces of 1..97 bytes */
    imago_sha256_ctx c;
    imago_sha256_init(&c);
    size_t off = 0, step = 1;
    while (off < n) {
        size_t k = step < n - off ? step : n - off;
        imago_sha256_update(&c, a + off, k);
        off += k;
        step = step % 97 + 1;
    }
    uint8_t d[32];
    imago_sha256_final(&c, d);
    imago_sha256_hex(d, hex);
    is_str(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
           "%s: one million 'a', streamed in odd pieces", path);
    free(a);
}

int main(void)
{
    int accel = imago_sha256_set_accel(1);
    tap_diag("SHA-NI available: %s", accel ? "yes" : "no");
    vectors(accel ? "sha-ni" : "portable (no SHA-NI on this CPU)");
    imago_sha256_set_accel(0);
    vectors("portable");

    /* both paths agree on every length 0..300 of pseudo-random data */
    uint8_t buf[300];
    uint64_t x = 88172645463325252ULL;
    for (size_t i = 0; i < sizeof buf; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    int agree = 1;
    for (size_t len = 0; len <= sizeof buf; len++) {
        uint8_t d1[32], d2[32];
        imago_sha256_set_accel(0);
        imago_sha256(buf, len, d1);
        imago_sha256_set_accel(1);
        imago_sha256(buf, len, d2);
        agree &= memcmp(d1, d2, 32) == 0;
    }
    ok(agree, "portable and accelerated digests agree for lengths 0..300");

    /* boundary lengths around the padding block: 55, 56, 63, 64 bytes of 'a' */
    static const struct {
        size_t n;
        const char *hex;
    } pads[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
    };
    char as[64];
    memset(as, 'a', sizeof as);
    for (size_t i = 0; i < sizeof pads / sizeof pads[0]; i++) {
        char hex[65];
        hex_of(as, pads[i].n, hex);
        is_str(hex, pads[i].hex, "%zu x 'a' (padding boundary)", pads[i].n);
    }

    /* file hash vs sha256sum over a 3 MB file (more than one read buffer) */
    size_t n = 3 * 1000 * 1000 + 17;
    uint8_t *big = malloc(n);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big[i] = (uint8_t)(x >> 11);
    }
    const char *path = tst_write("blob.bin", big, n);
    char hex[65] = "", mem_hex[65];
    imago_error err;
    imago_error_clear(&err);
    imago_sha256_set_accel(1);
    is_int(imago_sha256_file(path, hex, &err), 0, "sha256 of a file");
    hex_of(big, n, mem_hex);
    is_str(hex, mem_hex, "file hash equals the in-memory hash");
    char cmd[700];
    snprintf(cmd, sizeof cmd, "sha256sum '%s' 2>/dev/null", path);
    FILE *p = popen(cmd, "r");
    char line[256] = "";
    if (p && fgets(line, sizeof line, p) && strlen(line) >= 64) {
        line[64] = '\0';
        is_str(hex, line, "file hash equals sha256sum");
    } else {
        tap_skip(1, "sha256sum not available");
    }
    if (p)
        pclose(p);
    free(big);

    imago_error_clear(&err);
    is_int(imago_sha256_file("/nonexistent/imago/file", hex, &err), IMAGO_ERR_IO,
           "missing file gives IMAGO_ERR_IO");
    ok(strstr(err.msg, "/nonexistent/imago/file") != NULL, "message names the file: %s", err.msg);
    tst_cleanup();
    return tap_done();
}
