/*
 * ckptcli.h - `swarmsim checkpoint list|verify|export` (ckpt.h's operator view).
 *
 *   list   --dir DIR             every step folder, newest first, with its state
 *                                (committed or torn; no data is read)
 *   verify --dir DIR [--step N]  hash every tensor of every step (or step N);
 *                                exit 0 when every committed step is clean
 *   export --dir DIR --out OUT [--step N]
 *                                the newest clean step (or step N) as
 *                                OUT/model.safetensors + OUT/config.json
 *                                (Hugging Face LLaMA layout)
 */
#ifndef SW_CKPTCLI_H
#define SW_CKPTCLI_H

/* argv[0] is "checkpoint"; returns the exit status (0, 1 failure, 2 usage). */
int sw_ckptcli_main(int argc, char **argv, const char *prog);

#endif
