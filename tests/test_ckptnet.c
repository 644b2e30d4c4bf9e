/*
 * test_ckptnet - the split of a stage's tensors among its replicas for
 * local checkpoints (peers/ckptnet.h: sw_ckptnet_assign): every tensor has
 * exactly one writer, the split is a function of the layout and k only,
 * and the bytes are balanced within the largest tensor.
 */
#include "sw.h"

#include "ckptnet.h"
#include "model.h"
#include "tap.h"

int
main(void)
{
    struct sw_model_config c;
    struct sw_stage_layout lay;
    int S = 4;

    tap_plan(4 * 4);
    if (sw_model_preset("tiny", &c) < 0)
        return 1;
    for (int s = 0; s < S; s++) {
        int owner[256], again[256];
        bool ok_one = true, ok_same = true, ok_bal = true, ok_k1 = true;
        if (sw_stage_layout_init(&lay, &c, S, s) < 0 || lay.ntensors > 256)
            return 1;
        for (int k = 1; k <= SW_PROTO_MAX_REPLICAS; k++) {
            uint64_t load[SW_PROTO_MAX_REPLICAS] = {0}, big = 0, lo = UINT64_MAX, hi = 0;
            sw_ckptnet_assign(&lay, k, owner);
            sw_ckptnet_assign(&lay, k, again);
            for (int i = 0; i < lay.ntensors; i++) {
                ok_one &= owner[i] >= 0 && owner[i] < k;
                ok_same &= owner[i] == again[i];
                ok_k1 &= k > 1 || owner[i] == 0;
                load[owner[i] < 0 || owner[i] >= k ? 0 : owner[i]] += lay.tensors[i].numel;
                big = SW_MAX(big, (uint64_t)lay.tensors[i].numel);
            }
            for (int r = 0; r < SW_MIN(k, lay.ntensors); r++) {
                lo = SW_MIN(lo, load[r]);
                hi = SW_MAX(hi, load[r]);
            }
            ok_bal &= hi - lo <= big;
            if (k == 2)
                tap_diag("stage %d, 2 replicas: %llu and %llu floats (largest tensor %llu)", s,
                         (unsigned long long)load[0], (unsigned long long)load[1],
                         (unsigned long long)big);
        }
        tap_ok(ok_one, "stage %d: every tensor has exactly one writer among k (1..%d)", s,
               SW_PROTO_MAX_REPLICAS);
        tap_ok(ok_same, "stage %d: the split depends on the layout and k only", s);
        tap_ok(ok_bal, "stage %d: writers' bytes differ by at most the largest tensor", s);
        tap_ok(ok_k1, "stage %d: one node writes everything", s);
        sw_stage_layout_release(&lay);
    }
    return tap_done();
}
