/*
 * cfg.h - one table drives options, config files, --help and --dump-config.
 *
 * A table describes the fields of one struct (type, default, range, help).
 * The same table fills the defaults, parses "--name value" command-line
 * options (sw_cfg_getopt), "name = value" lines (sw_cfg_set, used by the
 * manifest parser with file:line in its errors), prints --help and
 * --dump-config, and is what the man pages list.
 *
 * (STYLE.md calls this module "config"; the file is cfg.h because autoconf's
 * config.h, which sw.h includes, would be shadowed by a src/config.h.)
 *
 *   static const struct sw_cfg_entry tab[] = {
 *       SW_CFG_INT(struct x, "steps", steps, 100, 1, 1000000, "training steps"),
 *   };
 */
#ifndef SW_CFG_H
#define SW_CFG_H

#include <stddef.h>
#include <stdio.h>

enum sw_cfg_type { SW_CFG_T_INT, SW_CFG_T_U64, SW_CFG_T_FLOAT, SW_CFG_T_BOOL, SW_CFG_T_STR };

struct sw_cfg_entry {
    const char *name;
    enum sw_cfg_type type;
    size_t offset;
    size_t size;        /* for strings: the char array's size */
    double def, min, max;
    const char *def_str;
    const char *help;
};

#define SW_CFG_INT(T, name, field, def, lo, hi, help)                          \
    {name, SW_CFG_T_INT, offsetof(T, field), sizeof(int), def, lo, hi, NULL, help}
#define SW_CFG_U64(T, name, field, def, help)                                  \
    {name, SW_CFG_T_U64, offsetof(T, field), sizeof(unsigned long long), def, 0, 0, NULL, help}
#define SW_CFG_FLOAT(T, name, field, def, lo, hi, help)                        \
    {name, SW_CFG_T_FLOAT, offsetof(T, field), sizeof(float), def, lo, hi, NULL, help}
#define SW_CFG_BOOL(T, name, field, def, help)                                 \
    {name, SW_CFG_T_BOOL, offsetof(T, field), sizeof(int), def, 0, 1, NULL, help}
#define SW_CFG_STR(T, name, field, def, help)                                  \
    {name, SW_CFG_T_STR, offsetof(T, field), sizeof(((T *)0)->field), 0, 0, 0, def, help}

void sw_cfg_defaults(const struct sw_cfg_entry *tab, size_t n, void *obj);
const struct sw_cfg_entry *sw_cfg_find(const struct sw_cfg_entry *tab, size_t n, const char *name);
/* Parse and range-check value into obj; on failure -SW_ECONFIG with why[]
 * naming the key and the accepted range. */
int sw_cfg_set(const struct sw_cfg_entry *tab, size_t n, void *obj, const char *name,
               const char *value, char *why, size_t whylen) __attribute__((warn_unused_result));
/* "name = value" lines, in table order. */
void sw_cfg_dump(const struct sw_cfg_entry *tab, size_t n, const void *obj, FILE *f);
/* "  --name VALUE   help (default D, range [lo, hi])" lines. */
void sw_cfg_help(const struct sw_cfg_entry *tab, size_t n, FILE *f);

/* Parse argv[first..] as --name value / --name=value / --flag (bools) /
 * --no-flag.  Stops at the first non-option; returns the index of the first
 * argument not consumed, or -SW_ECONFIG after printing a message naming the
 * bad option (prog: program name for messages).  "--help" and "-h" return
 * -SW_ECANCELED so that the caller prints its help. */
int sw_cfg_getopt(const struct sw_cfg_entry *tab, size_t n, void *obj, int argc, char **argv,
                  int first, const char *prog) __attribute__((warn_unused_result));

#endif
