/* Helpers shared by imago's unit test executables (linked with tap.c):
 * reading whole files and the fixtures under tests/data/. Not thread-safe
 * where they bail (tap_bail); call from the main thread.
 */
#ifndef IMAGO_TESTUTIL_H
#define IMAGO_TESTUTIL_H

#include <stddef.h>

/* Reads the whole file at path into a malloc'd buffer with a NUL byte after
 * its last byte (so text files can be used as strings); *len (when len is
 * not NULL) gets the size without that NUL. Returns NULL when the file cannot
 * be opened or read in full. The caller frees the buffer. */
char *testutil_read_file(const char *path, size_t *len);

/* Reads the fixture $IMAGO_SOURCE_ROOT/tests/data/<name> ("." when the
 * variable is unset) like testutil_read_file; bails out of the test (TAP
 * "Bail out!") when it cannot. The caller frees the buffer. */
unsigned char *testutil_read_fixture(const char *name, size_t *len);

/* The reference Python of the fixture scripts: $IMAGO_PYTHON or
 * /usr/bin/python3, when it runs and imports `modules` (a Python import list,
 * "torch, numpy"), and the source root (*root, from $IMAGO_SOURCE_ROOT).
 * Returns NULL after printing a TAP skip that says why (no source root, no
 * such Python): the caller then ends with tap_done(). Borrowed strings. */
const char *testutil_reference_python(const char *modules, const char **root);

/* Runs the fixture writer `py root/tools/<script> '<out>' <args>` (args
 * already quoted as needed); 0 on success, else a failed TAP test naming the
 * script ("<label>: tools/<script> ran") and -1. */
int testutil_run_fixture(const char *py, const char *root, const char *script, const char *out,
                         const char *args, const char *label);

/* A fresh temporary folder /tmp/imago-<tag>-XXXXXX in buf (bails on failure);
 * testutil_rmdir removes it and everything in it. */
void testutil_mkdtemp(const char *tag, char *buf, size_t cap);
void testutil_rmdir(const char *dir);

/* A seeded xorshift64 stream for reproducible test data: uniform in [0, 1)
 * and standard normal (Box-Muller). *state is the stream (any non-zero seed). */
double testutil_urand(unsigned long long *state);
double testutil_nrand(unsigned long long *state);

/* Cosine of two d-vectors in double precision; 0 when either is all zeros. */
double testutil_cosine(const float *a, const float *b, int d);

#endif
