/*
 * hfconfig.h - struct sw_model_config <-> Hugging Face config.json.
 *
 * Writer: a LlamaForCausalLM config that transformers loads unchanged:
 *   architectures ["LlamaForCausalLM"], model_type "llama", hidden_size,
 *   intermediate_size, num_attention_heads, num_key_value_heads,
 *   num_hidden_layers, vocab_size, rms_norm_eps, rope_theta,
 *   max_position_embeddings, tie_word_embeddings, hidden_act "silu",
 *   torch_dtype "float32", attention_bias false, mlp_bias false.
 * Floats are written with the shortest decimal that reads back as the same
 * float (1e-05, not 9.99999974737875e-06), so a round trip is exact.  The
 * file appears atomically (temporary file, fsync, rename, folder fsync).
 * bos/eos token ids are not written (byte-level data has none).
 *
 * Reader: requires hidden_size, intermediate_size, num_attention_heads,
 * num_hidden_layers and vocab_size (JSON integers, 1 .. 2^30); the others
 * default as transformers' LlamaConfig does:
 *   num_key_value_heads      = num_attention_heads
 *   max_position_embeddings  = 2048
 *   rope_theta               = 10000
 *   rms_norm_eps             = 1e-6   (LlamaConfig's default, NOT swarm's
 *                                      preset value 1e-5: a config.json that
 *                                      omits it means 1e-6)
 *   tie_word_embeddings      = false
 * It checks types and ranges (eps in (0, 1), theta > 0, finite; heads divide
 * hidden_size, kv heads divide heads, head size even for RoPE, head_dim if
 * present equal to hidden_size / heads) and refuses what swarm does not
 * implement: model_type other than "llama", architectures without
 * "LlamaForCausalLM", hidden_act other than "silu", a non-null rope_scaling,
 * attention_bias or mlp_bias true.  Unknown fields (bos_token_id,
 * initializer_range, use_cache, transformers_version, torch_dtype, ...)
 * are ignored.  Each refusal logs one line naming the file and the field and
 * returns -SW_ECONFIG (-SW_EFORMAT when the file is not a JSON object,
 * -errno when it cannot be read).  Deeper model checks (sizes the kernels
 * support) stay with sw_model_config_check().
 */
#ifndef SW_HFCONFIG_H
#define SW_HFCONFIG_H

#include <stddef.h>

#include "model.h"

/* Read path into *c (fully overwritten on success, untouched on failure). */
int sw_hfconfig_read(const char *path, struct sw_model_config *c)
    __attribute__((warn_unused_result));
/* The same on len bytes of JSON text; name is used in messages. */
int sw_hfconfig_parse(const char *buf, size_t len, const char *name, struct sw_model_config *c)
    __attribute__((warn_unused_result));
/* Write c to path atomically; -SW_ECONFIG (logged) if c is outside what the
 * reader accepts, so whatever is written reads back. */
int sw_hfconfig_write(const char *path, const struct sw_model_config *c)
    __attribute__((warn_unused_result));

#endif
