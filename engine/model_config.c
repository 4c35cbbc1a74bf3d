/* imago.config (docs/models.md, the model file): defaults, parsing from the JSON string stored in
 * the safetensors __metadata__, and validation. Every message names the key. */
#include "model_int.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define P_FROM_TENSOR "from tensor "

static const char *const BACKBONES[] = {"resnet50", "resnet101", "resnet152", "mobilenet_v2", NULL};
static const char *const HEADS[] = {"gem", "agem", "glam", "apgem", "glap", NULL};
static const char *const POOLINGS[] = {"gem", "spoc", "mac", NULL};
static const char *const WHITENINGS[] = {"none", "lw", "fc", NULL};
static const char *const STAGES[] = {"lw", "fc", NULL};
static const char *const PADDINGS[] = {"torch", "tf_same", NULL};

void imago_model_config_default(imago_model_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->format = 1;
    snprintf(cfg->pooling, sizeof cfg->pooling, "gem");
    snprintf(cfg->whitening, sizeof cfg->whitening, "none");
    snprintf(cfg->padding, sizeof cfg->padding, "torch");
    cfg->max_side = 1024;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(cfg->mean, mean, sizeof mean);
    memcpy(cfg->std, std, sizeof std);
    cfg->n_scales = 3;
    cfg->scales[0] = 1.0f;
    cfg->scales[1] = 0.70710678f;
    cfg->scales[2] = 0.5f;
    cfg->trained = 1;
    cfg->last_stride = 2;
    cfg->normalize_pooled = 1;
    cfg->gem_p = 3.0f;
    snprintf(cfg->p_tensor, sizeof cfg->p_tensor, "pool.p");
}

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

static int check_name(const char *key, const char *val, const char *const *list, imago_error *err)
{
    if (in_list(val, list))
        return 0;
    char allowed[128] = "";
    for (size_t n = 0; *list; list++)
        n += (size_t)snprintf(allowed + n, sizeof allowed - n, "%s%s", n ? ", " : "", *list);
    return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                           "imago.config: %s '%.64s' is not supported (one of: %s)", key, val,
                           allowed);
}

int imago_model_whitening_stages(const char *w, char stages[][4], int max)
{
    if (!w[0] || strcmp(w, "none") == 0)
        return 0;
    int n = 0;
    for (const char *s = w;;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (n == max || len == 0 || len > 3)
            return -1;
        memcpy(stages[n], s, len);
        stages[n][len] = '\0';
        n++;
        if (!e)
            return n;
        s = e + 1;
    }
}

/* "none", one stage, or distinct stages joined by ',' (from a JSON list). */
static int check_whitening(const char *w, imago_error *err)
{
    if (in_list(w, WHITENINGS) || !strchr(w, ','))
        return check_name("whitening", w, WHITENINGS, err);
    char st[IMAGO_MODEL_MAX_WHITEN][4];
    int n = imago_model_whitening_stages(w, st, IMAGO_MODEL_MAX_WHITEN);
    if (n < 0)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "imago.config: whitening '%.64s' is not supported (\"none\", "
                               "\"lw\", \"fc\" or a list of at most %d distinct stages)",
                               w, IMAGO_MODEL_MAX_WHITEN);
    for (int i = 0; i < n; i++) {
        int rc = check_name("whitening stage", st[i], STAGES, err);
        if (rc)
            return rc;
        for (int j = 0; j < i; j++)
            if (strcmp(st[i], st[j]) == 0)
                return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                                       "imago.config: whitening stage '%s' appears twice (its "
                                       "tensors whiten.* exist once)",
                                       st[i]);
    }
    return 0;
}

int imago_model_config_validate(const imago_model_config *c, imago_error *err)
{
    int rc;
    if (c->format != 1)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "imago.config: format %d is not supported (this build reads "
                               "format 1)",
                               c->format);
    if (!c->backbone[0])
        return imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: missing key 'backbone'");
    if (!c->head[0])
        return imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: missing key 'head'");
    if ((rc = check_name("backbone", c->backbone, BACKBONES, err)) ||
        (rc = check_name("head", c->head, HEADS, err)) ||
        (rc = check_name("pooling.type", c->pooling, POOLINGS, err)) ||
        (rc = check_whitening(c->whitening, err)) ||
        (rc = check_name("padding", c->padding, PADDINGS, err)))
        return rc;
    if (c->last_stride != 1 && c->last_stride != 2)
        return imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: last_stride %d is not 1 or 2",
                               c->last_stride);
    if (c->last_stride == 1 && strncmp(c->backbone, "resnet", 6) != 0)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "imago.config: last_stride 1 needs a ResNet backbone, not '%s'",
                               c->backbone);
    if (strcmp(c->head, "agem") == 0 && strncmp(c->backbone, "resnet", 6) != 0)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "imago.config: head 'agem' needs a ResNet backbone, not '%s'",
                               c->backbone);
    if (c->dim <= 0 || c->dim > 65536)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "imago.config: dim %d out of range (1..65536)", c->dim);
    if (c->max_side <= 0 || c->max_side > 16384)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "imago.config: input.max_side %d out of range (1..16384)",
                               c->max_side);
    for (int i = 0; i < 3; i++) {
        if (!isfinite(c->mean[i]))
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "imago.config: input.mean[%d] is not finite", i);
        if (!(c->std[i] > 0.0f) || !isfinite(c->std[i]))
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "imago.config: input.std[%d] = %g must be > 0", i,
                                   (double)c->std[i]);
    }
    if (c->n_scales < 1 || c->n_scales > IMAGO_MODEL_MAX_SCALES)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "imago.config: scales has %d values (want 1..%d)", c->n_scales,
                               IMAGO_MODEL_MAX_SCALES);
    for (int i = 0; i < c->n_scales; i++)
        if (!(c->scales[i] > 0.0f && c->scales[i] <= 4.0f))
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "imago.config: scales[%d] = %g is outside (0, 4]", i,
                                   (double)c->scales[i]);
    if (!c->p_tensor[0] && !(c->gem_p > 0.0f && c->gem_p <= 64.0f))
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "imago.config: pooling.p = %g is outside (0, 64]", (double)c->gem_p);
    return 0;
}

/* ---- JSON helpers: each names the key in its message ---------------------- */

static int get_string(json_t *obj, const char *key, const char *path, char *dst, size_t cap,
                      int truncate, imago_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_string(v))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: %s must be a string", path);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (strlen(s) != n)
        return imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: %s contains a NUL character",
                               path);
    if (n >= cap) {
        if (!truncate)
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "imago.config: %s is too long (%zu bytes, max %zu)", path, n,
                                   cap - 1);
        /* cut at a UTF-8 character boundary: the value may end up in JSON */
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static int get_int(json_t *obj, const char *key, const char *path, int *dst, imago_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_integer(v))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: %s must be an integer", path);
    json_int_t i = json_integer_value(v);
    if (i < -1000000000 || i > 1000000000)
        return imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: %s = %lld out of range", path,
                               (long long)i);
    *dst = (int)i;
    return 0;
}

static int get_floats(json_t *obj, const char *key, const char *path, float *dst, int min_n,
                      int max_n, int *n_out, imago_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_array(v))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: %s must be an array", path);
    size_t n = json_array_size(v);
    if (n < (size_t)min_n || n > (size_t)max_n) {
        if (min_n == max_n)
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "imago.config: %s has %zu values (want %d)", path, n, min_n);
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "imago.config: %s has %zu values (want %d..%d)", path, n, min_n,
                               max_n);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_number(e))
            return imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: %s[%zu] must be a number",
                                   path, i);
        double d = json_number_value(e);
        if (!isfinite(d) || fabs(d) > 1e30)
            return imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: %s[%zu] is out of range",
                                   path, i);
        dst[i] = (float)d;
    }
    if (n_out)
        *n_out = (int)n;
    return 0;
}

static int get_bool(json_t *obj, const char *key, const char *path, int *dst, imago_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: %s must be true or false",
                               path);
    *dst = json_is_true(v);
    return 0;
}

/* "whitening": a string, or a list of stage strings stored joined by ','. */
static int parse_whitening(json_t *root, imago_model_config *c, imago_error *err)
{
    json_t *v = json_object_get(root, "whitening");
    if (!v || json_is_string(v))
        return get_string(root, "whitening", "whitening", c->whitening, sizeof c->whitening, 0,
                          err);
    if (!json_is_array(v))
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "imago.config: whitening must be a string or a list of stages");
    size_t n = json_array_size(v);
    if (n < 1 || n > IMAGO_MODEL_MAX_WHITEN)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "imago.config: whitening has %zu stages (want 1..%d)", n,
                               IMAGO_MODEL_MAX_WHITEN);
    char buf[sizeof c->whitening] = "";
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e))
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "imago.config: whitening[%zu] must be a string", i);
        const char *s = json_string_value(e);
        if (!in_list(s, STAGES))
            return check_name("whitening stage", s, STAGES, err);
        size_t len = strlen(buf);
        snprintf(buf + len, sizeof buf - len, "%s%s", i ? "," : "", s);
    }
    memcpy(c->whitening, buf, sizeof buf);
    return 0;
}

static int parse_pooling(json_t *root, imago_model_config *c, imago_error *err)
{
    json_t *v = json_object_get(root, "pooling");
    if (!v)
        return 0;
    json_t *p = NULL;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!in_list(s, POOLINGS))
            return check_name("pooling", s, POOLINGS, err);
        snprintf(c->pooling, sizeof c->pooling, "%s", s);
    } else if (json_is_object(v)) {
        json_t *t = json_object_get(v, "type");
        if (!t)
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "imago.config: missing key 'pooling.type'");
        if (!json_is_string(t))
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "imago.config: pooling.type must be a string");
        if (!in_list(json_string_value(t), POOLINGS))
            return check_name("pooling.type", json_string_value(t), POOLINGS, err);
        snprintf(c->pooling, sizeof c->pooling, "%s", json_string_value(t));
        p = json_object_get(v, "p");
    } else {
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "imago.config: pooling must be an object {\"type\": ..., "
                               "\"p\": ...} or a string");
    }
    if (strcmp(c->pooling, "gem") != 0) {
        /* SPoC and MAC: p only matters for the multi-scale combination, where it is 1 */
        c->p_tensor[0] = '\0';
        c->gem_p = 1.0f;
        return 0;
    }
    if (!p)
        return 0; /* default: from tensor pool.p */
    if (json_is_number(p)) {
        double d = json_number_value(p);
        if (!(d > 0.0 && d <= 64.0))
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "imago.config: pooling.p = %g is outside (0, 64]", d);
        c->gem_p = (float)d;
        c->p_tensor[0] = '\0';
        return 0;
    }
    if (json_is_string(p)) {
        const char *s = json_string_value(p);
        size_t n = strlen(P_FROM_TENSOR);
        if (strncmp(s, P_FROM_TENSOR, n) == 0 && s[n] && strlen(s + n) < sizeof c->p_tensor &&
            strlen(s) == json_string_length(p)) {
            snprintf(c->p_tensor, sizeof c->p_tensor, "%s", s + n);
            return 0;
        }
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "imago.config: pooling.p '%.80s' is neither a number nor "
                               "\"from tensor NAME\"",
                               s);
    }
    return imago_error_set(err, IMAGO_ERR_FORMAT,
                           "imago.config: pooling.p must be a number or \"from tensor "
                           "pool.p\"");
}

int imago_model_config_parse(const char *text, imago_model_config *out, imago_error *err)
{
    if (!text)
        return imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: missing");
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "imago.config is not valid JSON: %s (line %d, column %d)", jerr.text,
                               jerr.line, jerr.column);
    imago_model_config c;
    imago_model_config_default(&c);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config is not a JSON object");
        goto done;
    }
    static const char *const required[] = {"format", "backbone", "head", "dim", NULL};
    for (int i = 0; required[i]; i++)
        if (!json_object_get(root, required[i])) {
            rc = imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: missing key '%s'",
                                 required[i]);
            goto done;
        }
    json_t *input = json_object_get(root, "input");
    if (input && !json_is_object(input)) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config: input must be an object");
        goto done;
    }
    if ((rc = get_int(root, "format", "format", &c.format, err)))
        goto done;
    if (c.format != 1) {
        rc = imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                             "imago.config: format %d is not supported (this build reads "
                             "format 1)",
                             c.format);
        goto done;
    }
    if ((rc = get_string(root, "name", "name", c.name, sizeof c.name, 0, err)) ||
        (rc = get_string(root, "backbone", "backbone", c.backbone, sizeof c.backbone, 0, err)) ||
        (rc = get_string(root, "head", "head", c.head, sizeof c.head, 0, err)) ||
        (rc = parse_whitening(root, &c, err)) ||
        (rc = get_int(root, "last_stride", "last_stride", &c.last_stride, err)) ||
        (rc = get_bool(root, "normalize_pooled", "normalize_pooled", &c.normalize_pooled, err)) ||
        (rc = get_string(root, "padding", "padding", c.padding, sizeof c.padding, 0, err)) ||
        (rc = get_string(root, "source", "source", c.source, sizeof c.source, 1, err)) ||
        (rc = get_int(root, "dim", "dim", &c.dim, err)) || (rc = parse_pooling(root, &c, err)))
        goto done;
    if (input && ((rc = get_int(input, "max_side", "input.max_side", &c.max_side, err)) ||
                  (rc = get_floats(input, "mean", "input.mean", c.mean, 3, 3, NULL, err)) ||
                  (rc = get_floats(input, "std", "input.std", c.std, 3, 3, NULL, err))))
        goto done;
    if ((rc = get_floats(root, "scales", "scales", c.scales, 1, IMAGO_MODEL_MAX_SCALES, &c.n_scales,
                         err)))
        goto done;
    json_t *tr = json_object_get(root, "trained");
    if (tr) {
        if (!json_is_boolean(tr)) {
            rc = imago_error_set(err, IMAGO_ERR_FORMAT,
                                 "imago.config: trained must be true or false");
            goto done;
        }
        c.trained = json_is_true(tr);
    }
    if ((rc = imago_model_config_validate(&c, err)))
        goto done;
    *out = c;
done:
    json_decref(root);
    return rc;
}
