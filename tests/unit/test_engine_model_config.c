/* Unit tests for the imago.config parser (engine/model_config.c): defaults,
 * the docs/models.md example, every option, and every bad value with its error
 * code and a message naming the key. */
#include "engine/model.h"
#include "tap.h"

#include <math.h>
#include <string.h>

static imago_error err;

static int parse(const char *json, imago_model_config *c)
{
    imago_error_clear(&err);
    return imago_model_config_parse(json, c, &err);
}

#define BASE "\"format\": 1, \"backbone\": \"resnet101\", \"head\": \"agem\", \"dim\": 2048"

static void bad(const char *json, int code, const char *needle)
{
    imago_model_config c;
    memset(&c, 0x5a, sizeof c);
    int rc = parse(json, &c);
    is_int(rc, code, "%s -> %s", json, imago_error_name(code));
    ok(needle == NULL || strstr(err.msg, needle) != NULL, "  message names '%s': %s",
       needle ? needle : "", err.msg);
    ok(((unsigned char *)&c)[0] == 0x5a && c.dim == (int)0x5a5a5a5a,
       "  config untouched on failure");
}

int main(void)
{
    imago_model_config c;
    imago_model_config_default(&c);
    is_int(c.format, 1, "default format 1");
    is_int(c.max_side, 1024, "default max_side 1024");
    ok(c.mean[0] == 0.485f && c.mean[1] == 0.456f && c.mean[2] == 0.406f, "ImageNet mean");
    ok(c.std[0] == 0.229f && c.std[1] == 0.224f && c.std[2] == 0.225f, "ImageNet std");
    is_int(c.n_scales, 3, "three default scales");
    ok(c.scales[0] == 1.0f && fabsf(c.scales[1] - 0.70710678f) < 1e-7f && c.scales[2] == 0.5f,
       "scales [1, 1/sqrt 2, 1/2]");
    is_str(c.pooling, "gem", "pooling gem");
    is_str(c.p_tensor, "pool.p", "p from tensor pool.p");
    is_str(c.whitening, "none", "whitening none");
    is_str(c.padding, "torch", "padding torch");
    is_int(c.trained, 1, "trained");
    ok(c.backbone[0] == 0 && c.head[0] == 0 && c.dim == 0, "no backbone/head/dim by default");
    imago_error_clear(&err);
    is_int(imago_model_config_validate(&c, &err), IMAGO_ERR_FORMAT,
           "default config alone does not validate (no backbone)");

    /* the minimal config: defaults for everything optional */
    is_int(parse("{" BASE "}", &c), 0, "minimal config parses");
    is_str(c.backbone, "resnet101", "backbone");
    is_str(c.head, "agem", "head");
    is_int(c.dim, 2048, "dim");
    is_int(c.max_side, 1024, "max_side defaulted");
    is_int(c.n_scales, 3, "scales defaulted");
    is_str(c.p_tensor, "pool.p", "p defaulted to pool.p");
    is_str(c.fingerprint, "", "fingerprint empty (set by the loader)");
    is_int(imago_model_config_validate(&c, &err), 0, "parsed config validates");

    /* the docs/models.md example */
    const char *design =
        "{\"format\": 1, \"name\": \"rSfM120k-resnet101-agem\", \"backbone\": \"resnet101\","
        " \"head\": \"agem\", \"pooling\": {\"type\": \"gem\", \"p\": \"from tensor pool.p\"},"
        " \"dim\": 2048, \"whitening\": \"lw\", \"input\": {\"max_side\": 1024,"
        " \"mean\": [0.485,0.456,0.406], \"std\": [0.229,0.224,0.225]},"
        " \"scales\": [1, 0.70710678, 0.5], \"source\": \"converted from ...\"}";
    is_int(parse(design, &c), 0, "docs/models.md example parses");
    is_str(c.name, "rSfM120k-resnet101-agem", "name");
    is_str(c.whitening, "lw", "whitening lw");
    is_str(c.source, "converted from ...", "source");
    is_str(c.p_tensor, "pool.p", "p from tensor");
    ok(c.n_scales == 3 && c.scales[2] == 0.5f, "scales read");

    /* every option set */
    const char *full =
        "{\"format\": 1, \"name\": \"m\", \"backbone\": \"mobilenet_v2\", \"head\": \"glam\","
        " \"pooling\": {\"type\": \"gem\", \"p\": 3.5}, \"dim\": 512, \"whitening\": \"fc\","
        " \"padding\": \"tf_same\", \"input\": {\"max_side\": 800, \"mean\": [0.5, 0.5, 0.5],"
        " \"std\": [0.5, 0.25, 2]}, \"scales\": [2, 1, 0.5, 0.25], \"trained\": false,"
        " \"unknown_future_key\": {\"x\": 1}}";
    is_int(parse(full, &c), 0, "config with every option parses (unknown keys ignored)");
    is_str(c.backbone, "mobilenet_v2", "mobilenet_v2");
    is_str(c.head, "glam", "glam");
    is_str(c.padding, "tf_same", "tf_same");
    is_str(c.whitening, "fc", "fc whitening");
    ok(c.gem_p == 3.5f && c.p_tensor[0] == 0, "numeric p: 3.5, no tensor");
    is_int(c.max_side, 800, "max_side 800");
    ok(c.mean[1] == 0.5f && c.std[1] == 0.25f && c.std[2] == 2.0f, "mean/std read");
    ok(c.n_scales == 4 && c.scales[0] == 2.0f && c.scales[3] == 0.25f, "4 scales");
    is_int(c.trained, 0, "trained false");
    is_int(c.dim, 512, "dim 512");

    is_int(parse("{" BASE ", \"pooling\": \"mac\"}", &c), 0, "pooling as a plain string");
    is_str(c.pooling, "mac", "mac");
    ok(c.p_tensor[0] == 0 && c.gem_p == 1.0f, "mac: p = 1, no tensor");
    is_int(parse("{" BASE ", \"pooling\": {\"type\": \"spoc\", \"p\": \"whatever\"}}", &c), 0,
           "spoc ignores p");
    is_str(c.pooling, "spoc", "spoc");
    is_int(parse("{" BASE ", \"pooling\": {\"type\": \"gem\", \"p\": \"from tensor head.p\"}}", &c),
           0, "p from another tensor");
    is_str(c.p_tensor, "head.p", "p tensor name kept");
    is_int(parse("{" BASE ", \"trained\": true, \"scales\": [4]}", &c), 0,
           "trained true, one scale 4");
    ok(c.trained == 1 && c.n_scales == 1 && c.scales[0] == 4.0f, "values");
    char longsrc[400];
    memset(longsrc, 'x', sizeof longsrc);
    char json[800];
    snprintf(json, sizeof json, "{" BASE ", \"source\": \"%.300s\"}", longsrc);
    is_int(parse(json, &c), 0, "a 300-byte source is accepted");
    is_int((int)strlen(c.source), 255, "and truncated to 255 bytes");
    /* 254 ASCII bytes then a 2-byte UTF-8 character: cut before the character */
    snprintf(json, sizeof json, "{" BASE ", \"source\": \"%.254s\u00e9tail\"}", longsrc);
    is_int(parse(json, &c), 0, "a source with a multi-byte character at the cut");
    is_int((int)strlen(c.source), 254, "cut at the UTF-8 boundary (254 bytes, not 255)");

    /* bad values: code + key in the message + output untouched */
    bad("{", IMAGO_ERR_FORMAT, "line 1");
    bad("[1]", IMAGO_ERR_FORMAT, "not a JSON object");
    bad("{\"backbone\": \"resnet50\", \"head\": \"gem\", \"dim\": 1}", IMAGO_ERR_FORMAT,
        "'format'");
    bad("{\"format\": 1, \"head\": \"gem\", \"dim\": 1}", IMAGO_ERR_FORMAT, "'backbone'");
    bad("{\"format\": 1, \"backbone\": \"resnet50\", \"dim\": 1}", IMAGO_ERR_FORMAT, "'head'");
    bad("{\"format\": 1, \"backbone\": \"resnet50\", \"head\": \"gem\"}", IMAGO_ERR_FORMAT,
        "'dim'");
    bad("{\"format\": 2, \"backbone\": \"resnet50\", \"head\": \"gem\", \"dim\": 1}",
        IMAGO_ERR_UNSUPPORTED, "format 2");
    bad("{\"format\": \"1\", \"backbone\": \"resnet50\", \"head\": \"gem\", \"dim\": 1}",
        IMAGO_ERR_FORMAT, "format");
    bad("{\"format\": 1, \"backbone\": \"vgg16\", \"head\": \"gem\", \"dim\": 1}",
        IMAGO_ERR_UNSUPPORTED, "backbone 'vgg16'");
    bad("{\"format\": 1, \"backbone\": 50, \"head\": \"gem\", \"dim\": 1}", IMAGO_ERR_FORMAT,
        "backbone");
    bad("{\"format\": 1, \"backbone\": \"resnet50\", \"head\": \"netvlad\", \"dim\": 1}",
        IMAGO_ERR_UNSUPPORTED, "head 'netvlad'");
    bad("{\"format\": 1, \"backbone\": \"mobilenet_v2\", \"head\": \"agem\", \"dim\": 1}",
        IMAGO_ERR_UNSUPPORTED, "agem");
    bad("{\"format\": 1, \"backbone\": \"resnet50\", \"head\": \"gem\", \"dim\": 0}",
        IMAGO_ERR_FORMAT, "dim");
    bad("{\"format\": 1, \"backbone\": \"resnet50\", \"head\": \"gem\", \"dim\": -5}",
        IMAGO_ERR_FORMAT, "dim");
    bad("{\"format\": 1, \"backbone\": \"resnet50\", \"head\": \"gem\", \"dim\": 2048.5}",
        IMAGO_ERR_FORMAT, "dim");
    bad("{\"format\": 1, \"backbone\": \"resnet50\", \"head\": \"gem\", "
        "\"dim\": 99999999999}",
        IMAGO_ERR_FORMAT, "dim");
    bad("{" BASE ", \"pooling\": {\"type\": \"max\"}}", IMAGO_ERR_UNSUPPORTED, "pooling.type");
    bad("{" BASE ", \"pooling\": \"avg\"}", IMAGO_ERR_UNSUPPORTED, "pooling");
    bad("{" BASE ", \"pooling\": {\"p\": 3}}", IMAGO_ERR_FORMAT, "pooling.type");
    bad("{" BASE ", \"pooling\": 3}", IMAGO_ERR_FORMAT, "pooling");
    bad("{" BASE ", \"pooling\": {\"type\": \"gem\", \"p\": \"learned\"}}", IMAGO_ERR_FORMAT,
        "pooling.p");
    bad("{" BASE ", \"pooling\": {\"type\": \"gem\", \"p\": \"from tensor \"}}", IMAGO_ERR_FORMAT,
        "pooling.p");
    bad("{" BASE ", \"pooling\": {\"type\": \"gem\", \"p\": -1}}", IMAGO_ERR_FORMAT, "pooling.p");
    bad("{" BASE ", \"pooling\": {\"type\": \"gem\", \"p\": 0}}", IMAGO_ERR_FORMAT, "pooling.p");
    bad("{" BASE ", \"pooling\": {\"type\": \"gem\", \"p\": true}}", IMAGO_ERR_FORMAT, "pooling.p");
    bad("{" BASE ", \"whitening\": \"pca\"}", IMAGO_ERR_UNSUPPORTED, "whitening 'pca'");
    bad("{" BASE ", \"padding\": \"same\"}", IMAGO_ERR_UNSUPPORTED, "padding 'same'");
    /* whitening stages, last_stride, normalize_pooled, the AP-GeM / GLAP heads */
    is_int(parse("{\"format\": 1, \"backbone\": \"resnet101\", \"head\": \"gem\", "
                 "\"dim\": 2048, \"whitening\": [\"fc\", \"lw\"], \"normalize_pooled\": "
                 "false}",
                 &c),
           0, "whitening [fc, lw] + normalize_pooled false parse (%s)", err.msg);
    is_str(c.whitening, "fc,lw", "  stored as the stages joined by ','");
    is_int(c.normalize_pooled, 0, "  normalize_pooled false");
    char st[IMAGO_MODEL_MAX_WHITEN][4];
    ok(imago_model_whitening_stages(c.whitening, st, IMAGO_MODEL_MAX_WHITEN) == 2 &&
           strcmp(st[0], "fc") == 0 && strcmp(st[1], "lw") == 0,
       "  split back into fc, lw in order");
    is_int(parse("{\"format\": 1, \"backbone\": \"resnet50\", \"head\": \"glap\", "
                 "\"dim\": 512, \"whitening\": [\"lw\"], \"last_stride\": 1}",
                 &c),
           0, "glap + last_stride 1 + whitening [lw] parse (%s)", err.msg);
    ok(c.last_stride == 1 && strcmp(c.whitening, "lw") == 0 && c.normalize_pooled == 1,
       "  last_stride 1, whitening lw, normalize_pooled default true");
    is_int(parse("{\"format\": 1, \"backbone\": \"mobilenet_v2\", \"head\": \"apgem\", "
                 "\"dim\": 1280}",
                 &c),
           0, "apgem on MobileNetV2 parses (%s)", err.msg);
    bad("{" BASE ", \"whitening\": [\"lw\", \"lw\"]}", IMAGO_ERR_UNSUPPORTED, "twice");
    bad("{" BASE ", \"whitening\": [\"fc\", \"pca\"]}", IMAGO_ERR_UNSUPPORTED,
        "whitening stage 'pca'");
    bad("{" BASE ", \"whitening\": []}", IMAGO_ERR_FORMAT, "whitening has 0 stages");
    bad("{" BASE ", \"whitening\": [\"fc\", \"lw\", \"fc\"]}", IMAGO_ERR_FORMAT,
        "whitening has 3 stages");
    bad("{" BASE ", \"whitening\": [1]}", IMAGO_ERR_FORMAT, "whitening[0]");
    bad("{" BASE ", \"whitening\": \"fc,none\"}", IMAGO_ERR_UNSUPPORTED,
        "whitening 'fc,none'");
    bad("{" BASE ", \"last_stride\": 3}", IMAGO_ERR_FORMAT, "last_stride 3");
    bad("{\"format\": 1, \"backbone\": \"mobilenet_v2\", \"head\": \"glap\", \"dim\": 512, "
        "\"last_stride\": 1}",
        IMAGO_ERR_UNSUPPORTED, "last_stride 1 needs a ResNet");
    bad("{" BASE ", \"normalize_pooled\": 0}", IMAGO_ERR_FORMAT, "normalize_pooled");
    bad("{" BASE ", \"input\": 5}", IMAGO_ERR_FORMAT, "input");
    bad("{" BASE ", \"input\": {\"max_side\": 0}}", IMAGO_ERR_FORMAT, "input.max_side");
    bad("{" BASE ", \"input\": {\"max_side\": \"big\"}}", IMAGO_ERR_FORMAT, "input.max_side");
    bad("{" BASE ", \"input\": {\"mean\": [0.5, 0.5]}}", IMAGO_ERR_FORMAT, "input.mean");
    bad("{" BASE ", \"input\": {\"mean\": [0.5, \"a\", 0.5]}}", IMAGO_ERR_FORMAT, "input.mean[1]");
    bad("{" BASE ", \"input\": {\"std\": [0.5, 0, 0.5]}}", IMAGO_ERR_FORMAT, "input.std[1]");
    bad("{" BASE ", \"input\": {\"std\": [0.5, 0.5, -0.1]}}", IMAGO_ERR_FORMAT, "input.std[2]");
    bad("{" BASE ", \"input\": {\"std\": 0.5}}", IMAGO_ERR_FORMAT, "input.std");
    bad("{" BASE ", \"scales\": []}", IMAGO_ERR_FORMAT, "scales");
    bad("{" BASE ", \"scales\": [1,1,1,1,1,1,1,1,1]}", IMAGO_ERR_FORMAT, "scales");
    bad("{" BASE ", \"scales\": [1, 0]}", IMAGO_ERR_FORMAT, "scales[1]");
    bad("{" BASE ", \"scales\": [1, -0.5]}", IMAGO_ERR_FORMAT, "scales[1]");
    bad("{" BASE ", \"scales\": [4.5]}", IMAGO_ERR_FORMAT, "scales[0]");
    bad("{" BASE ", \"scales\": \"1\"}", IMAGO_ERR_FORMAT, "scales");
    bad("{" BASE ", \"scales\": [1e400]}", IMAGO_ERR_FORMAT, NULL);
    bad("{" BASE ", \"trained\": \"no\"}", IMAGO_ERR_FORMAT, "trained");
    bad("{" BASE ", \"trained\": 0}", IMAGO_ERR_FORMAT, "trained");
    bad("{" BASE ", \"name\": 5}", IMAGO_ERR_FORMAT, "name");
    bad("{" BASE ", \"name\": \"a\\u0000b\"}", IMAGO_ERR_FORMAT, NULL);
    bad("{" BASE ", \"dim\": 5}", IMAGO_ERR_FORMAT, "duplicate");
    snprintf(json, sizeof json, "{" BASE ", \"name\": \"%.200s\"}", longsrc);
    bad(json, IMAGO_ERR_FORMAT, "name is too long");

    imago_error_clear(&err);
    is_int(imago_model_config_parse(NULL, &c, &err), IMAGO_ERR_FORMAT, "NULL text");

    /* validate() on configs built in code */
    imago_model_config_default(&c);
    snprintf(c.backbone, sizeof c.backbone, "resnet152");
    snprintf(c.head, sizeof c.head, "gem");
    c.dim = 2048;
    imago_error_clear(&err);
    is_int(imago_model_config_validate(&c, &err), 0, "code-built config validates");
    c.n_scales = 0;
    is_int(imago_model_config_validate(&c, &err), IMAGO_ERR_FORMAT, "0 scales refused");
    c.n_scales = 1;
    c.std[0] = NAN;
    imago_error_clear(&err);
    is_int(imago_model_config_validate(&c, &err), IMAGO_ERR_FORMAT, "NaN std refused");
    return tap_done();
}
