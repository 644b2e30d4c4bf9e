/*
 * test_hfconfig.c - config.json round trip, Hugging Face defaults, refusals.
 */
#include "sw.h"

#include "hfconfig.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/sw-test-hf-XXXXXX";
static char path[256];

static bool
same(const struct sw_model_config *a, const struct sw_model_config *b)
{
    return a->vocab_size == b->vocab_size && a->d_model == b->d_model &&
           a->n_layers == b->n_layers && a->n_heads == b->n_heads &&
           a->n_kv_heads == b->n_kv_heads && a->ffn_hidden == b->ffn_hidden &&
           a->seq_len == b->seq_len && a->rope_theta == b->rope_theta &&
           a->rms_eps == b->rms_eps && a->tied == b->tied;
}

static void
write_text(const char *text)
{
    FILE *f = fopen(path, "w");

    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(99);
    }
}

static char *
read_text(void)
{
    static char buf[8192];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

    if (f)
        fclose(f);
    buf[n] = '\0';
    return buf;
}

#define BASE "\"hidden_size\": 64, \"intermediate_size\": 172, \"num_attention_heads\": 4, " \
             "\"num_hidden_layers\": 2, \"vocab_size\": 256"

static void
bad(const char *what, const char *json, int want)
{
    struct sw_model_config c = {0};
    int rc;

    write_text(json);
    rc = sw_hfconfig_read(path, &c);
    tap_ok(rc == want && c.d_model == 0, "refused: %s (%s)", what, sw_err_name(rc));
}

int
main(void)
{
    struct sw_model_config a = {
        .vocab_size = 256, .d_model = 96, .n_layers = 3, .n_heads = 6, .n_kv_heads = 2,
        .ffn_hidden = 256, .seq_len = 128, .rope_theta = 10000.0f, .rms_eps = 1e-5f,
        .tied = false,
    };
    struct sw_model_config b, c;
    char *text;
    int rc;

    if (!mkdtemp(dir))
        return 99;
    snprintf(path, sizeof(path), "%s/config.json", dir);

    rc = sw_hfconfig_write(path, &a);
    tap_ok(rc == 0, "write: %s", sw_err_name(rc));
    text = read_text();
    tap_ok(strstr(text, "\"rms_norm_eps\": 1e-5") && strstr(text, "\"rope_theta\": 10000.0") &&
           strstr(text, "\"LlamaForCausalLM\"") && strstr(text, "\"model_type\": \"llama\"") &&
           strstr(text, "\"hidden_act\": \"silu\"") && strstr(text, "\"torch_dtype\": \"float32\"") &&
           strstr(text, "\"attention_bias\": false") && strstr(text, "\"mlp_bias\": false") &&
           strstr(text, "\"tie_word_embeddings\": false") &&
           strstr(text, "\"num_key_value_heads\": 2") &&
           strstr(text, "\"max_position_embeddings\": 128"),
           "config.json has the Hugging Face fields, floats written short");
    memset(&b, 0, sizeof(b));
    rc = sw_hfconfig_read(path, &b);
    tap_ok(rc == 0 && same(&a, &b), "round trip is exact");

    c = a;
    c.rope_theta = 500000.0f;
    c.rms_eps = 1.2345678e-6f;
    c.tied = true;
    c.n_kv_heads = 6;
    rc = sw_hfconfig_write(path, &c);
    memset(&b, 0, sizeof(b));
    rc = rc ? rc : sw_hfconfig_read(path, &b);
    tap_ok(rc == 0 && same(&c, &b), "round trip of odd floats and tied embeddings");
    tap_ok(access(path, F_OK) == 0 && unlink(path) == 0 && rmdir(dir) == 0,
           "no temporary file left behind");
    if (mkdtemp(strcpy(dir, "/tmp/sw-test-hf-XXXXXX")) == NULL)
        return 99;
    snprintf(path, sizeof(path), "%s/config.json", dir);

    c = a;
    c.n_heads = 5;
    rc = sw_hfconfig_write(path, &c);
    tap_ok(rc == -SW_ECONFIG && access(path, F_OK) != 0, "writer refuses 96 %% 5 heads");

    /* Hugging Face defaults */
    write_text("{" BASE "}");
    memset(&b, 0, sizeof(b));
    rc = sw_hfconfig_read(path, &b);
    tap_ok(rc == 0 && b.n_kv_heads == 4 && b.rope_theta == 10000.0f && b.rms_eps == 1e-6f &&
           !b.tied && b.seq_len == 2048 && b.d_model == 64 && b.ffn_hidden == 172 &&
           b.n_layers == 2 && b.vocab_size == 256,
           "defaults: kv heads = heads, theta 1e4, eps 1e-6, untied, 2048 positions");
    write_text("{" BASE ", \"rope_scaling\": null, \"attention_bias\": false, \"bos_token_id\": 1,"
               " \"head_dim\": 16, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000,"
               " \"transformers_version\": \"4.44.0\", \"architectures\": [\"LlamaForCausalLM\"]}");
    rc = sw_hfconfig_read(path, &b);
    tap_ok(rc == 0 && b.rms_eps == 1e-5f, "a real Hugging Face config with extra fields reads");

    bad("missing hidden_size", "{\"intermediate_size\": 172, \"num_attention_heads\": 4, "
        "\"num_hidden_layers\": 2, \"vocab_size\": 256}", -SW_ECONFIG);
    bad("missing vocab_size", "{\"hidden_size\": 64, \"intermediate_size\": 172, "
        "\"num_attention_heads\": 4, \"num_hidden_layers\": 2}", -SW_ECONFIG);
    bad("hidden_size a string", "{\"hidden_size\": \"64\", \"intermediate_size\": 172, "
        "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"vocab_size\": 256}", -SW_ECONFIG);
    bad("hidden_size a real", "{\"hidden_size\": 64.0, \"intermediate_size\": 172, "
        "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"vocab_size\": 256}", -SW_ECONFIG);
    bad("num_hidden_layers 0", "{\"hidden_size\": 64, \"intermediate_size\": 172, "
        "\"num_attention_heads\": 4, \"num_hidden_layers\": 0, \"vocab_size\": 256}", -SW_ECONFIG);
    bad("vocab_size negative", "{\"hidden_size\": 64, \"intermediate_size\": 172, "
        "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"vocab_size\": -1}", -SW_ECONFIG);
    bad("vocab_size 2^31", "{\"hidden_size\": 64, \"intermediate_size\": 172, "
        "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"vocab_size\": 2147483648}",
        -SW_ECONFIG);
    bad("heads do not divide hidden_size", "{\"hidden_size\": 64, \"intermediate_size\": 172, "
        "\"num_attention_heads\": 5, \"num_hidden_layers\": 2, \"vocab_size\": 256}", -SW_ECONFIG);
    bad("kv heads do not divide heads", "{" BASE ", \"num_key_value_heads\": 3}", -SW_ECONFIG);
    bad("odd head size", "{\"hidden_size\": 60, \"intermediate_size\": 172, "
        "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"vocab_size\": 256}", -SW_ECONFIG);
    bad("head_dim differs", "{" BASE ", \"head_dim\": 32}", -SW_ECONFIG);
    bad("hidden_act gelu", "{" BASE ", \"hidden_act\": \"gelu\"}", -SW_ECONFIG);
    bad("rope_scaling set", "{" BASE ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}",
        -SW_ECONFIG);
    bad("attention_bias true", "{" BASE ", \"attention_bias\": true}", -SW_ECONFIG);
    bad("mlp_bias true", "{" BASE ", \"mlp_bias\": true}", -SW_ECONFIG);
    bad("attention_bias a string", "{" BASE ", \"attention_bias\": \"no\"}", -SW_ECONFIG);
    bad("model_type mistral", "{" BASE ", \"model_type\": \"mistral\"}", -SW_ECONFIG);
    bad("architectures without Llama", "{" BASE ", \"architectures\": [\"GPT2LMHeadModel\"]}",
        -SW_ECONFIG);
    bad("rms_norm_eps 0", "{" BASE ", \"rms_norm_eps\": 0}", -SW_ECONFIG);
    bad("rms_norm_eps negative", "{" BASE ", \"rms_norm_eps\": -1e-5}", -SW_ECONFIG);
    bad("rms_norm_eps a string", "{" BASE ", \"rms_norm_eps\": \"1e-5\"}", -SW_ECONFIG);
    bad("rope_theta 1e300", "{" BASE ", \"rope_theta\": 1e300}", -SW_ECONFIG);
    bad("tie_word_embeddings 1", "{" BASE ", \"tie_word_embeddings\": 1}", -SW_ECONFIG);
    bad("duplicate field", "{" BASE ", \"vocab_size\": 512}", -SW_EFORMAT);
    bad("not JSON", "{hidden_size: 64}", -SW_EFORMAT);
    bad("a JSON array", "[1, 2]", -SW_EFORMAT);
    bad("empty file", "", -SW_EFORMAT);
    unlink(path);
    rc = sw_hfconfig_read(path, &b);
    tap_ok(rc == -SW_ENOENT, "missing file: %s", sw_err_name(rc));
    rmdir(dir);
    return tap_done();
}
