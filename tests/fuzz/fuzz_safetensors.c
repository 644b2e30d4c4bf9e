/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors reader.
 *
 * Each input is a whole file image: it is opened from memory
 * (sw_safetensors_open_mem, the same checks as a file on disk), and when it
 * opens every tensor is looked up by name and read as F32 when its dtype
 * converts, so the offsets the reader accepted are exercised too.  Any
 * crash, sanitizer report or leak is a bug; refusals are expected.
 * `scripts/fuzz.sh safetensors SECONDS` compiles it with
 * fuzz-sources: src/safetensors.c
 */
#include "sw.h"

#include "safetensors.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sw_safetensors st;

    sw_log_level = SW_LOG_NONE;
    if (sw_safetensors_open_mem(&st, data, size, "fuzz", 0) < 0)
        return 0;
    for (int i = 0; i < st.ntensors; i++) {
        const struct sw_st_tensor *t = &st.tensors[i];
        float *buf;
        int rc;

        if (sw_safetensors_find(&st, t->name) != t)
            abort();
        if (t->offset < st.data_start || t->offset + t->nbytes > size)
            abort();
        if (t->numel > ((size_t)1 << 20))
            continue;
        buf = malloc(t->numel ? (size_t)t->numel * sizeof(float) : 1);
        if (!buf)
            continue;
        rc = sw_safetensors_read_f32(&st, t->name, buf, (size_t)t->numel, t->shape, t->ndim);
        if ((rc == 0) != sw_dtype_is_float(t->dtype))
            abort();
        free(buf);
    }
    for (int i = 0; i < st.nmeta; i++)
        if (sw_safetensors_meta(&st, st.meta[i].key) == NULL)
            abort();
    sw_safetensors_close(&st);
    return 0;
}
