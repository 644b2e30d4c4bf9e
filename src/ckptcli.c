/*
 * ckptcli.c - swarmsim checkpoint list|verify|export (see ckptcli.h).
 */
#include "sw.h"

#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "ckpt.h"
#include "ckptcli.h"

struct ckpt_opts {
    char dir[4096];
    char out[4096];
    char log_level[16];
    int step;
};

#define T struct ckpt_opts
static const struct sw_cfg_entry ckpt_tab[] = {
    SW_CFG_STR(T, "dir", dir, "", "checkpoint folder (holds step-NNNNNNNN folders)"),
    SW_CFG_STR(T, "out", out, "", "export: output folder for model.safetensors and config.json"),
    SW_CFG_INT(T, "step", step, -1, -1, 2147483647, "this step only (-1: the newest clean one)"),
    SW_CFG_STR(T, "log-level", log_level, "warn", "debug, info, warn or error"),
};
#undef T

int
sw_ckptcli_main(int argc, char **argv, const char *prog)
{
    struct ckpt_opts o;
    struct sw_ckpt_entry *e = NULL;
    struct sw_ckpt ck;
    const char *what;
    int n, err, bad = 0, clean = 0;

    if (argc < 2 || (strcmp(argv[1], "list") && strcmp(argv[1], "verify") &&
                     strcmp(argv[1], "export"))) {
        fprintf(stderr, "usage: %s checkpoint list|verify|export --dir DIR [--out OUT] "
                        "[--step N]\n", prog);
        return 2;
    }
    what = argv[1];
    sw_cfg_defaults(ckpt_tab, SW_ARRAY_SIZE(ckpt_tab), &o);
    err = sw_cfg_getopt(ckpt_tab, SW_ARRAY_SIZE(ckpt_tab), &o, argc - 1, argv + 1, 1, prog);
    if (err == -SW_ECANCELED) {
        printf("usage: %s checkpoint %s [options]\n\n", prog, what);
        sw_cfg_help(ckpt_tab, SW_ARRAY_SIZE(ckpt_tab), stdout);
        return 0;
    }
    if (err < 0)
        return 2;
    if (err < argc - 1) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[err + 1]);
        return 2;
    }
    if (sw_log_parse_level(o.log_level) < 0) {
        fprintf(stderr, "%s: --log-level: want debug, info, warn or error\n", prog);
        return 2;
    }
    if (!o.dir[0]) {
        fprintf(stderr, "%s: checkpoint %s needs --dir DIR\n", prog, what);
        return 2;
    }
    if (!strcmp(what, "export")) {
        if (!o.out[0]) {
            fprintf(stderr, "%s: checkpoint export needs --out DIR\n", prog);
            return 2;
        }
        if ((err = sw_ckpt_open(&ck, o.dir, o.step)) < 0)
            return 1;
        err = sw_ckpt_export(&ck, o.out);
        if (err == 0)
            printf("exported step %d of '%s' to '%s/model.safetensors' and '%s/config.json'\n",
                   ck.run.step, o.dir, o.out, o.out);
        sw_ckpt_close(&ck);
        return err < 0 ? 1 : 0;
    }
    if ((err = sw_ckpt_list(o.dir, !strcmp(what, "verify"), &e, &n)) < 0)
        return 1;
    for (int i = 0; i < n; i++) {
        if (o.step >= 0 && e[i].step != o.step)
            continue;
        if (e[i].status == 0 && e[i].S > 0)
            printf("step-%08d %s, %d stage(s), %.1f MB\n", e[i].step, e[i].why, e[i].S,
                   e[i].bytes / 1e6);
        else
            printf("step-%08d %s\n", e[i].step, e[i].why);
        if (e[i].status == 0)
            clean++;
        else if (e[i].status != -SW_ENOENT)
            bad++;
    }
    if (n == 0)
        printf("no checkpoint in '%s'\n", o.dir);
    sw_free(e);
    return bad || clean == 0 ? 1 : 0;
}
