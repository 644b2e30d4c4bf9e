/*
 * test_manifest - the run manifest: parsing, refusals with file:line,
 * run id, signature round trip (peers/manifest.h).
 */
#include "sw.h"

#include <sodium.h>
#include <string.h>

#include "manifest.h"
#include "tap.h"

static const char good[] = "# a run\n"
                           "[run]\nname = t\nstages = 2\nsteps = 30\nseed = 7\n\n"
                           "[model]\npreset = tiny\nd_model = 32\n\n"
                           "[batch]\nsize = 2\nmicro = 3\nseq_len = 16\n\n"
                           "[optim]\nlr = 1e-3\nwarmup = 3\neps = 1e-7\n\n"
                           "[recovery]\nmode = checkfree\n\n"
                           "[checkpoint]\nevery = 10\nkeep = 3\n\n"
                           "[data]\npath = /tmp/x.txt\nval_frac = 0.2\n";

static bool
refused(const char *text, const char *want)
{
    struct sw_manifest m;
    char why[512] = "";
    int err = sw_manifest_parse(&m, "m.conf", text, strlen(text), why, sizeof(why));

    if (err == 0) {
        sw_manifest_release(&m);
        printf("# accepted: %s\n", text);
        return false;
    }
    if (!strstr(why, want)) {
        printf("# got '%s', want '%s'\n", why, want);
        return false;
    }
    return err == -SW_ECONFIG;
}

int
main(void)
{
    struct sw_manifest m;
    struct sw_identity owner, other;
    uint8_t id[32], sig[64], o2[32], s2[64];
    char why[512], text[512];
    int err;

    tap_plan(26);
    err = sw_manifest_parse(&m, "good.conf", good, strlen(good), why, sizeof(why));
    tap_ok(err == 0, "a good manifest parses (%s)", err ? why : "ok");
    tap_ok(m.stages == 2 && m.steps == 30 && m.seed == 7 && m.batch == 2 && m.micro == 3 &&
               m.T == 16 && m.model.d_model == 32 && m.model.n_layers == 4 &&
               m.optim.lr == 1e-3f && m.optim.max_steps == 30 && m.optim.eps == 1e-7f &&
               m.ckpt_every == 10 && m.val_frac == 0.2f && !strcmp(m.data, "/tmp/x.txt"),
           "its values and the derived model and optimizer");
    crypto_generichash(id, 32, (const uint8_t *)good, strlen(good), NULL, 0);
    tap_ok(!memcmp(id, m.run_id, 32), "run id = BLAKE2b-256 of the bytes");

    tap_ok(refused("[run]\nstages = 2\nfoo = 1\n", "m.conf:3: unknown key 'foo'"),
           "unknown key: file:line");
    tap_ok(refused("[run]\nstages = 2\n[nope]\nx = 1\n", "m.conf:4: unknown section '[nope]'"),
           "unknown section");
    tap_ok(refused("stages = 2\n", "m.conf:1: key 'stages' outside a section"),
           "key outside a section");
    tap_ok(refused("[batch]\nsize = 0\n", "m.conf:2: 'size' wants an integer in [1, 65536]"),
           "out of range");
    tap_ok(refused("[optim]\nlr = abc\n", "m.conf:2: 'lr' wants a number"), "not a number");
    tap_ok(refused("[run]\nsteps = 3\nsteps = 4\n", "m.conf:3: key 'run.steps' repeated"),
           "repeated key");
    tap_ok(refused("[run]\nthis line is wrong\n", "m.conf:2: syntax error"), "syntax error");
    tap_ok(refused("[model]\npreset = huge\n", "unknown preset 'huge'"), "unknown preset");
    tap_ok(refused("[model]\npreset = tiny\n[run]\nstages = 9\n", "run.stages"),
           "more stages than blocks");
    tap_ok(refused("[recovery]\nmode = pray\n", "recovery.mode"), "unknown recovery mode");
    tap_ok(m.act_codec == SW_CODEC_FP32 &&
               refused("[wire]\nactivations = int2\n",
                       "wire.activations: want fp32, bf16, int8 or int4"),
           "no [wire] section: fp32 activations; an unknown codec is refused");
    tap_ok(refused("[wire]\ngradients = bf16\n", "wire.gradients: want fp32, int8 or int4") &&
               refused("[wire]\ngradients = int2\n", "wire.gradients: want fp32, int8 or int4"),
           "gradients in bf16 or an unknown codec are refused (fp32, int8 or int4)");
    {
        static const char w[] = "[model]\npreset = tiny\n[wire]\nactivations = int8\n";
        struct sw_manifest mw;
        err = sw_manifest_parse(&mw, "w.conf", w, strlen(w), why, sizeof(why));
        tap_ok(err == 0 && mw.act_codec == SW_CODEC_INT8 && mw.grad_codec == SW_CODEC_FP32,
               "[wire] activations = int8 is read; gradients stay fp32 by default");
        if (err == 0)
            sw_manifest_release(&mw);
    }
    {
        static const char w[] = "[model]\npreset = tiny\n[wire]\nactivations = int4\n"
                                "gradients = int4\n";
        struct sw_manifest mw;
        err = sw_manifest_parse(&mw, "w.conf", w, strlen(w), why, sizeof(why));
        tap_ok(err == 0 && mw.act_codec == SW_CODEC_INT4 && mw.grad_codec == SW_CODEC_INT4,
               "[wire] activations = int4 and gradients = int4 are read");
        if (err == 0)
            sw_manifest_release(&mw);
    }
    tap_ok(!m.admission_open && !strcmp(m.admission, "owner"),
           "no [admission] section: mode owner");
    tap_ok(refused("[admission]\nmode = anyone\n", "admission.mode"), "unknown admission mode");
    {
        static const char open_run[] = "[admission]\nmode = open\n";
        struct sw_manifest m2;
        tap_ok(sw_manifest_parse(&m2, "open.conf", open_run, strlen(open_run), why,
                                 sizeof(why)) == 0 && m2.admission_open,
               "[admission] mode = open parses");
        if (m2.bytes)
            sw_manifest_release(&m2);
    }
    tap_ok(refused("[model]\npreset = tiny\n[batch]\nseq_len = 65\n", "exceeds"),
           "seq_len beyond the model");

    if (sw_identity_global_init() < 0 || sw_identity_generate(&owner) < 0 ||
        sw_identity_generate(&other) < 0)
        return 1;
    tap_ok(sw_manifest_sign(&owner, m.run_id, sig) == 0 &&
               sw_manifest_verify(owner.pk, m.run_id, sig),
           "signature round trip");
    tap_ok(!sw_manifest_verify(other.pk, m.run_id, sig), "another owner does not verify");
    id[0] ^= 1;
    tap_ok(!sw_manifest_verify(owner.pk, id, sig), "another run id does not verify");
    tap_ok(sw_manifest_sig_format(text, sizeof(text), owner.pk, sig) == 0 &&
               sw_manifest_sig_parse(text, o2, s2) == 0 && !memcmp(o2, owner.pk, 32) &&
               !memcmp(s2, sig, 64),
           "signature file round trip");
    tap_ok(sw_manifest_sig_parse("swarm-manifest-signature 1\nowner zz\nsig 00\n", o2, s2) < 0,
           "a bad signature file is refused");
    sw_identity_release(&owner);
    sw_identity_release(&other);
    sw_manifest_release(&m);
    return tap_done();
}
