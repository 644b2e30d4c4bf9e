#include "sw.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"

#define FIELD(obj, e) ((char *)(obj) + (e)->offset)

void
sw_cfg_defaults(const struct sw_cfg_entry *tab, size_t n, void *obj)
{
    for (size_t i = 0; i < n; i++) {
        const struct sw_cfg_entry *e = &tab[i];
        switch (e->type) {
        case SW_CFG_T_INT:
        case SW_CFG_T_BOOL:
            *(int *)FIELD(obj, e) = (int)e->def;
            break;
        case SW_CFG_T_U64:
            *(unsigned long long *)FIELD(obj, e) = (unsigned long long)e->def;
            break;
        case SW_CFG_T_FLOAT:
            *(float *)FIELD(obj, e) = (float)e->def;
            break;
        case SW_CFG_T_STR:
            snprintf(FIELD(obj, e), e->size, "%s", e->def_str ? e->def_str : "");
            break;
        }
    }
}

const struct sw_cfg_entry *
sw_cfg_find(const struct sw_cfg_entry *tab, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(tab[i].name, name) == 0)
            return &tab[i];
    return NULL;
}

int
sw_cfg_set(const struct sw_cfg_entry *tab, size_t n, void *obj, const char *name,
           const char *value, char *why, size_t whylen)
{
    const struct sw_cfg_entry *e = sw_cfg_find(tab, n, name);
    char *end;

    if (!e) {
        snprintf(why, whylen, "unknown key '%s'", name);
        return -SW_ECONFIG;
    }
    errno = 0;
    switch (e->type) {
    case SW_CFG_T_INT: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < e->min || v > e->max) {
            snprintf(why, whylen, "'%s' wants an integer in [%.0f, %.0f], got '%s'", name, e->min,
                     e->max, value);
            return -SW_ECONFIG;
        }
        *(int *)FIELD(obj, e) = (int)v;
        break;
    }
    case SW_CFG_T_U64: {
        unsigned long long v = strtoull(value, &end, 0);
        if (errno || end == value || *end || value[0] == '-') {
            snprintf(why, whylen, "'%s' wants a non-negative integer, got '%s'", name, value);
            return -SW_ECONFIG;
        }
        *(unsigned long long *)FIELD(obj, e) = v;
        break;
    }
    case SW_CFG_T_FLOAT: {
        double v = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(v) || v < e->min || v > e->max) {
            snprintf(why, whylen, "'%s' wants a number in [%g, %g], got '%s'", name, e->min,
                     e->max, value);
            return -SW_ECONFIG;
        }
        *(float *)FIELD(obj, e) = (float)v;
        break;
    }
    case SW_CFG_T_BOOL:
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes") ||
            !strcmp(value, "on"))
            *(int *)FIELD(obj, e) = 1;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no") ||
                 !strcmp(value, "off"))
            *(int *)FIELD(obj, e) = 0;
        else {
            snprintf(why, whylen, "'%s' wants true or false, got '%s'", name, value);
            return -SW_ECONFIG;
        }
        break;
    case SW_CFG_T_STR:
        if (strlen(value) >= e->size) {
            snprintf(why, whylen, "'%s' is longer than %zu bytes", name, e->size - 1);
            return -SW_ECONFIG;
        }
        snprintf(FIELD(obj, e), e->size, "%s", value);
        break;
    }
    return 0;
}

static void
format_value(const struct sw_cfg_entry *e, const void *obj, char *buf, size_t len)
{
    switch (e->type) {
    case SW_CFG_T_INT:
        snprintf(buf, len, "%d", *(const int *)FIELD(obj, e));
        break;
    case SW_CFG_T_U64:
        snprintf(buf, len, "%llu", *(const unsigned long long *)FIELD(obj, e));
        break;
    case SW_CFG_T_FLOAT:
        snprintf(buf, len, "%.9g", (double)*(const float *)FIELD(obj, e));
        break;
    case SW_CFG_T_BOOL:
        snprintf(buf, len, "%s", *(const int *)FIELD(obj, e) ? "true" : "false");
        break;
    case SW_CFG_T_STR:
        snprintf(buf, len, "%s", (const char *)FIELD(obj, e));
        break;
    }
}

void
sw_cfg_dump(const struct sw_cfg_entry *tab, size_t n, const void *obj, FILE *f)
{
    char buf[4200];

    for (size_t i = 0; i < n; i++) {
        format_value(&tab[i], obj, buf, sizeof(buf));
        fprintf(f, "%s = %s\n", tab[i].name, buf);
    }
}

void
sw_cfg_help(const struct sw_cfg_entry *tab, size_t n, FILE *f)
{
    for (size_t i = 0; i < n; i++) {
        const struct sw_cfg_entry *e = &tab[i];
        char opt[64];

        switch (e->type) {
        case SW_CFG_T_BOOL:
            snprintf(opt, sizeof(opt), "--%s", e->name);
            fprintf(f, "  %-26s %s (default %s)\n", opt, e->help, e->def ? "on" : "off");
            break;
        case SW_CFG_T_STR:
            snprintf(opt, sizeof(opt), "--%s S", e->name);
            if (e->def_str && *e->def_str)
                fprintf(f, "  %-26s %s (default %s)\n", opt, e->help, e->def_str);
            else
                fprintf(f, "  %-26s %s\n", opt, e->help);
            break;
        case SW_CFG_T_FLOAT:
            snprintf(opt, sizeof(opt), "--%s X", e->name);
            fprintf(f, "  %-26s %s (default %g)\n", opt, e->help, e->def);
            break;
        default:
            snprintf(opt, sizeof(opt), "--%s N", e->name);
            fprintf(f, "  %-26s %s (default %.0f)\n", opt, e->help, e->def);
            break;
        }
    }
}

int
sw_cfg_getopt(const struct sw_cfg_entry *tab, size_t n, void *obj, int argc, char **argv,
              int first, const char *prog)
{
    char why[512], name[128];
    int i = first;

    while (i < argc) {
        const char *a = argv[i], *eq, *value = NULL;
        const struct sw_cfg_entry *e;
        bool negate = false;

        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return -SW_ECANCELED;
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
            break;
        a += 2;
        eq = strchr(a, '=');
        snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
        if (eq)
            value = eq + 1;
        e = sw_cfg_find(tab, n, name);
        if (!e && strncmp(name, "no-", 3) == 0) {
            e = sw_cfg_find(tab, n, name + 3);
            if (e && e->type == SW_CFG_T_BOOL && !value) {
                negate = true;
            } else {
                e = NULL;
            }
        }
        if (!e) {
            fprintf(stderr, "%s: unknown option '--%s' (see --help)\n", prog, name);
            return -SW_ECONFIG;
        }
        if (e->type == SW_CFG_T_BOOL && !value) {
            value = negate ? "false" : "true";
        } else if (!value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: option '--%s' needs a value\n", prog, name);
                return -SW_ECONFIG;
            }
            value = argv[++i];
        }
        if (sw_cfg_set(tab, n, obj, e->name, value, why, sizeof(why)) < 0) {
            fprintf(stderr, "%s: %s\n", prog, why);
            return -SW_ECONFIG;
        }
        i++;
    }
    return i;
}
