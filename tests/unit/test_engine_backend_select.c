/* Unit tests for the engine's backend selection (engine/engine.c): cpu,
 * auto and cuda with the GPU plugin (imago_cuda.so) present, missing,
 * broken or foreign, and the precisions each allows. On a machine without
 * a GPU (CI) auto must fall back to the CPU with the reason noted and cuda
 * must fail with a typed error that names the cause; with a GPU, auto and
 * cuda must pick it. */
#include "engine/engine.h"
#include "imago_build.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int open_engine(const char *backend, const char *precision, const char *plugin,
                       imago_model_info *info, imago_error *err)
{
    imago_engine_params p = imago_engine_params_default();
    p.demo_arch = "mobilenet_v2-gem";
    p.backend = backend;
    p.precision = precision;
    p.cuda_plugin = plugin;
    p.threads = 1;
    imago_engine *e = NULL;
    imago_error_clear(err);
    int rc = imago_engine_open(&p, &e, err);
    if (rc == 0) {
        imago_engine_describe(e, info);
        imago_engine_free(e);
    }
    return rc;
}

int main(void)
{
    imago_model_info info;
    imago_error err;

    int rc = open_engine("cpu", "fp32", NULL, &info, &err);
    is_int(rc, 0, "cpu opens (%s)", err.msg);
    is_str(info.backend, "cpu", "cpu: backend is cpu");
    is_str(info.backend_note, "", "cpu: nothing to note");
    ok(strstr(info.device, "oneDNN") != NULL, "cpu: the device names oneDNN (%s)", info.device);

    rc = open_engine("tpu", "fp32", NULL, &info, &err);
    is_int(rc, IMAGO_ERR_INVALID, "an unknown backend is invalid (%s)", err.msg);

    /* auto with the default plugin locations */
    rc = open_engine("auto", "fp32", NULL, &info, &err);
    is_int(rc, 0, "auto opens (%s)", err.msg);
    int gpu = rc == 0 && strcmp(info.backend, "cuda") == 0;
    tap_diag("auto chose %s on %s%s%s", info.backend, info.device,
             info.backend_note[0] ? "; " : "", info.backend_note);
    if (gpu) {
        ok(info.device[0] != 0, "auto on a GPU: the device is described (%s)", info.device);
        is_str(info.backend_note, "", "auto on a GPU: nothing to note");
        rc = open_engine("cuda", "fp16", NULL, &info, &err);
        is_int(rc, 0, "cuda fp16 opens on a GPU (%s)", err.msg);
        is_str(info.precision, "fp16", "cuda fp16: precision reported");
    } else {
        is_str(info.backend, "cpu", "auto without a usable GPU falls back to cpu");
        ok(strncmp(info.backend_note, "no GPU backend: ", 16) == 0 && strlen(info.backend_note) > 20,
           "auto notes why the GPU is not used (%s)", info.backend_note);
        rc = open_engine("cuda", "fp32", NULL, &info, &err);
        is_int(rc, IMAGO_ERR_UNSUPPORTED, "cuda without a usable GPU is unsupported (%s)",
               err.msg);
        ok(strstr(err.msg, "cuda") != NULL, "the error names the backend");
        if (IMAGO_HAVE_CUDNN && access(IMAGO_CUDA_PLUGIN_BUILD, R_OK) == 0)
            ok(strstr(err.msg, "no CUDA device") != NULL,
               "with the plugin built, the cause is the missing device (%s)", err.msg);
        rc = open_engine("auto", "fp16", NULL, &info, &err);
        is_int(rc, IMAGO_ERR_UNSUPPORTED, "fp16 without a GPU is unsupported (%s)", err.msg);
        ok(strstr(err.msg, "fp32 and bf16") != NULL, "the error says what the CPU runs");
        rc = open_engine("auto", "bf16", NULL, &info, &err);
        is_int(rc, 0, "bf16 falls back to the CPU (%s)", err.msg);
    }

    /* a plugin path that does not exist */
    const char *missing = "/nonexistent/imago_cuda.so";
    rc = open_engine("auto", "fp32", missing, &info, &err);
    is_int(rc, 0, "auto with a missing plugin opens (%s)", err.msg);
    is_str(info.backend, "cpu", "auto with a missing plugin uses the cpu");
    ok(strstr(info.backend_note, missing) != NULL, "the note names the path (%s)",
       info.backend_note);
    rc = open_engine("cuda", "fp32", missing, &info, &err);
    is_int(rc, IMAGO_ERR_UNSUPPORTED, "cuda with a missing plugin is unsupported");
    ok(strstr(err.msg, missing) != NULL && strstr(err.msg, "not found") != NULL,
       "the error names the path and says not found (%s)", err.msg);

    /* a file that is not a shared object */
    char junk[] = "/tmp/imago_plugin_XXXXXX";
    int fd = mkstemp(junk);
    ok(fd >= 0, "temp file");
    if (fd >= 0) {
        ok(write(fd, "not an ELF file\n", 16) == 16, "write junk");
        close(fd);
        rc = open_engine("cuda", "fp32", junk, &info, &err);
        is_int(rc, IMAGO_ERR_UNSUPPORTED, "cuda with a junk plugin is unsupported");
        ok(strstr(err.msg, junk) != NULL, "the dlopen error names the file (%s)", err.msg);
        unlink(junk);
    }

    /* a shared object that is not an imago plugin */
    const char *libs[] = {"/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6",
                          "/lib64/libm.so.6"};
    const char *libm = NULL;
    for (size_t i = 0; i < sizeof libs / sizeof libs[0] && !libm; i++)
        if (access(libs[i], R_OK) == 0)
            libm = libs[i];
    if (libm) {
        rc = open_engine("cuda", "fp32", libm, &info, &err);
        is_int(rc, IMAGO_ERR_UNSUPPORTED, "cuda with a foreign library is unsupported");
        ok(strstr(err.msg, "not an imago GPU plugin") != NULL, "and says so (%s)", err.msg);
    } else {
        tap_skip(2, "no libm.so.6 at the usual places");
    }
    return tap_done();
}
