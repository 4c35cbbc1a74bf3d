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

#endif
