/*
 * hfconfig.c - see hfconfig.h for the contract.
 */
#include "sw.h"

#include "hfconfig.h"
#include "safetensors.h" /* sw__afile_* */

#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HF_INT_MAX (1 << 30)
#define HF_FILE_MAX (16u << 20) /* a config.json is a few hundred bytes */

SW_PRINTF(3, 4) static int
refuse(const char *file, int err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sw_log(SW_LOG_ERROR, "'%s': %s", file, msg);
    return err;
}

/* Integer field: required (no default) when def < 0. */
static int
get_int(const char *file, json_t *root, const char *key, int def, int *out)
{
    json_t *v = json_object_get(root, key);
    json_int_t x;

    if (!v || json_is_null(v)) {
        if (def < 0)
            return refuse(file, -SW_ECONFIG, "field '%s' is missing", key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v))
        return refuse(file, -SW_ECONFIG, "field '%s' is not an integer", key);
    x = json_integer_value(v);
    if (x < 1 || x > HF_INT_MAX)
        return refuse(file, -SW_ECONFIG, "field '%s' = %lld is out of range [1, %d]", key,
                      (long long)x, HF_INT_MAX);
    *out = (int)x;
    return 0;
}

/* Positive finite number below max; def when absent. */
static int
get_num(const char *file, json_t *root, const char *key, double def, double max, float *out)
{
    json_t *v = json_object_get(root, key);
    double x;

    if (!v || json_is_null(v)) {
        *out = (float)def;
        return 0;
    }
    if (!json_is_number(v))
        return refuse(file, -SW_ECONFIG, "field '%s' is not a number", key);
    x = json_number_value(v);
    if (!(x > 0) || !(x < max) || (float)x <= 0)
        return refuse(file, -SW_ECONFIG, "field '%s' = %g is out of range (0, %g)", key, x, max);
    *out = (float)x;
    return 0;
}

static int
get_bool(const char *file, json_t *root, const char *key, bool def, bool *out)
{
    json_t *v = json_object_get(root, key);

    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return refuse(file, -SW_ECONFIG, "field '%s' is not true or false", key);
    *out = json_is_true(v);
    return 0;
}

/* Shared by the reader and the writer, so that what is written reads back. */
static int
check_config(const char *file, const struct sw_model_config *c)
{
    if (c->d_model % c->n_heads)
        return refuse(file, -SW_ECONFIG, "field 'hidden_size' = %d is not a multiple of "
                      "'num_attention_heads' = %d", c->d_model, c->n_heads);
    if (c->n_heads % c->n_kv_heads)
        return refuse(file, -SW_ECONFIG, "field 'num_attention_heads' = %d is not a multiple of "
                      "'num_key_value_heads' = %d", c->n_heads, c->n_kv_heads);
    if ((c->d_model / c->n_heads) % 2)
        return refuse(file, -SW_ECONFIG, "field 'hidden_size' / 'num_attention_heads' = %d is "
                      "odd (RoPE needs an even head size)", c->d_model / c->n_heads);
    return 0;
}

int
sw_hfconfig_parse(const char *buf, size_t len, const char *name, struct sw_model_config *out)
{
    struct sw_model_config c;
    json_error_t jerr;
    json_t *root, *v;
    bool b = false;
    int err = -SW_ECONFIG;

    memset(&c, 0, sizeof(c));
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return refuse(name, -SW_EFORMAT, "not valid JSON: %s (line %d, column %d)", jerr.text,
                      jerr.line, jerr.column);
    if (!json_is_object(root)) {
        err = refuse(name, -SW_EFORMAT, "not a JSON object");
        goto out;
    }

    v = json_object_get(root, "model_type");
    if (v && !(json_is_string(v) && strcmp(json_string_value(v), "llama") == 0)) {
        refuse(name, err, "field 'model_type' is not \"llama\"");
        goto out;
    }
    v = json_object_get(root, "architectures");
    if (v && !json_is_null(v)) {
        size_t i;
        json_t *a;
        bool found = false;

        if (!json_is_array(v)) {
            refuse(name, err, "field 'architectures' is not an array");
            goto out;
        }
        json_array_foreach(v, i, a)
            if (json_is_string(a) && strcmp(json_string_value(a), "LlamaForCausalLM") == 0)
                found = true;
        if (!found) {
            refuse(name, err, "field 'architectures' does not list \"LlamaForCausalLM\"");
            goto out;
        }
    }
    v = json_object_get(root, "hidden_act");
    if (v && !(json_is_string(v) && strcmp(json_string_value(v), "silu") == 0)) {
        refuse(name, err, "field 'hidden_act' is not \"silu\" (only SwiGLU with silu is "
               "supported)");
        goto out;
    }
    v = json_object_get(root, "rope_scaling");
    if (v && !json_is_null(v)) {
        refuse(name, err, "field 'rope_scaling' is set: RoPE scaling is not supported");
        goto out;
    }
    if (get_bool(name, root, "attention_bias", false, &b) < 0)
        goto out;
    if (b) {
        refuse(name, err, "field 'attention_bias' is true: biases are not supported");
        goto out;
    }
    if (get_bool(name, root, "mlp_bias", false, &b) < 0)
        goto out;
    if (b) {
        refuse(name, err, "field 'mlp_bias' is true: biases are not supported");
        goto out;
    }

    if (get_int(name, root, "hidden_size", -1, &c.d_model) < 0 ||
        get_int(name, root, "intermediate_size", -1, &c.ffn_hidden) < 0 ||
        get_int(name, root, "num_attention_heads", -1, &c.n_heads) < 0 ||
        get_int(name, root, "num_hidden_layers", -1, &c.n_layers) < 0 ||
        get_int(name, root, "vocab_size", -1, &c.vocab_size) < 0 ||
        get_int(name, root, "num_key_value_heads", c.n_heads, &c.n_kv_heads) < 0 ||
        get_int(name, root, "max_position_embeddings", 2048, &c.seq_len) < 0 ||
        get_num(name, root, "rope_theta", 10000.0, 1e30, &c.rope_theta) < 0 ||
        get_num(name, root, "rms_norm_eps", 1e-6, 1.0, &c.rms_eps) < 0 ||
        get_bool(name, root, "tie_word_embeddings", false, &c.tied) < 0)
        goto out;
    if (check_config(name, &c) < 0)
        goto out;
    v = json_object_get(root, "head_dim");
    if (v && !json_is_null(v) &&
        !(json_is_integer(v) && json_integer_value(v) == c.d_model / c.n_heads)) {
        refuse(name, err, "field 'head_dim' is not hidden_size / num_attention_heads = %d",
               c.d_model / c.n_heads);
        goto out;
    }
    *out = c;
    err = 0;
out:
    json_decref(root);
    return err;
}

int
sw_hfconfig_read(const char *path, struct sw_model_config *c)
{
    struct stat sb;
    char *buf = NULL;
    size_t got = 0;
    int fd, err;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return refuse(path, -errno, "cannot open: %s", strerror(errno));
    if (fstat(fd, &sb) < 0) {
        err = refuse(path, -errno, "cannot stat: %s", strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size > (off_t)HF_FILE_MAX) {
        err = refuse(path, -SW_EFORMAT, "not a regular file of at most %u bytes", HF_FILE_MAX);
        goto out;
    }
    buf = sw_malloc((size_t)sb.st_size + 1);
    if (!buf) {
        err = -SW_ENOMEM;
        goto out;
    }
    while (got < (size_t)sb.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)sb.st_size - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err = refuse(path, -errno, "cannot read: %s", strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    err = sw_hfconfig_parse(buf, got, path, c);
out:
    sw_free(buf);
    close(fd);
    return err;
}

/* The shortest decimal that reads back as f, as a double jansson prints
 * back the same way (it prints with 15 significant digits, below). */
static json_t *
real_of(float f)
{
    char buf[32];

    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof(buf), "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f)
            break;
    }
    return json_real(strtod(buf, NULL));
}

int
sw_hfconfig_write(const char *path, const struct sw_model_config *c)
{
    struct sw__afile f;
    json_t *root = NULL, *arch;
    char *text = NULL;
    int err = -SW_ECONFIG;

    if (c->vocab_size < 1 || c->d_model < 1 || c->n_layers < 1 || c->n_heads < 1 ||
        c->n_kv_heads < 1 || c->ffn_hidden < 1 || c->seq_len < 1 || c->vocab_size > HF_INT_MAX ||
        c->d_model > HF_INT_MAX || c->n_layers > HF_INT_MAX || c->n_heads > HF_INT_MAX ||
        c->n_kv_heads > HF_INT_MAX || c->ffn_hidden > HF_INT_MAX || c->seq_len > HF_INT_MAX ||
        !(c->rope_theta > 0) || !isfinite(c->rope_theta) || !(c->rms_eps > 0) ||
        !(c->rms_eps < 1))
        return refuse(path, -SW_ECONFIG, "cannot write a config with a field out of range");
    if (check_config(path, c) < 0)
        return -SW_ECONFIG;

    err = -SW_ENOMEM;
    root = json_object();
    arch = json_array();
    if (!root || !arch) {
        json_decref(arch);
        goto out;
    }
    json_array_append_new(arch, json_string("LlamaForCausalLM"));
    if (json_object_set_new(root, "architectures", arch) < 0 ||
        json_object_set_new(root, "model_type", json_string("llama")) < 0 ||
        json_object_set_new(root, "hidden_size", json_integer(c->d_model)) < 0 ||
        json_object_set_new(root, "intermediate_size", json_integer(c->ffn_hidden)) < 0 ||
        json_object_set_new(root, "num_attention_heads", json_integer(c->n_heads)) < 0 ||
        json_object_set_new(root, "num_key_value_heads", json_integer(c->n_kv_heads)) < 0 ||
        json_object_set_new(root, "num_hidden_layers", json_integer(c->n_layers)) < 0 ||
        json_object_set_new(root, "vocab_size", json_integer(c->vocab_size)) < 0 ||
        json_object_set_new(root, "rms_norm_eps", real_of(c->rms_eps)) < 0 ||
        json_object_set_new(root, "rope_theta", real_of(c->rope_theta)) < 0 ||
        json_object_set_new(root, "max_position_embeddings", json_integer(c->seq_len)) < 0 ||
        json_object_set_new(root, "tie_word_embeddings", json_boolean(c->tied)) < 0 ||
        json_object_set_new(root, "hidden_act", json_string("silu")) < 0 ||
        json_object_set_new(root, "torch_dtype", json_string("float32")) < 0 ||
        json_object_set_new(root, "attention_bias", json_false()) < 0 ||
        json_object_set_new(root, "mlp_bias", json_false()) < 0)
        goto out;
    text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    if (!text)
        goto out;
    if ((err = sw__afile_open(&f, path)) < 0)
        goto out;
    if ((err = sw__afile_write(&f, text, strlen(text))) < 0 ||
        (err = sw__afile_write(&f, "\n", 1)) < 0) {
        sw__afile_abort(&f);
        goto out;
    }
    err = sw__afile_commit(&f);
out:
    if (err == -SW_ENOMEM)
        sw_log(SW_LOG_ERROR, "'%s': out of memory", path);
    free(text); /* jansson's allocator */
    json_decref(root);
    return err;
}
