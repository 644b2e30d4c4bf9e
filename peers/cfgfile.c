#include "sw.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <string.h>

#include "cfgfile.h"

struct parse_state {
    const struct sw_cfg_entry *tab;
    size_t n;
    void *obj;
    const char *section;
    const char *const *skip;
    bool *seen;             /* [n]: the key was set by this file */
    char why[400];          /* the first error; inih reports its line */
};

static bool
skipped(const struct parse_state *ps, const char *section)
{
    for (const char *const *s = ps->skip; s && *s; s++)
        if (!strcmp(*s, section))
            return true;
    return false;
}

static int
on_pair(void *user, const char *section, const char *name, const char *value)
{
    struct parse_state *ps = user;
    const struct sw_cfg_entry *e;
    size_t i;

    if (ps->why[0])
        return 0; /* keep the first error */
    if (section[0] && strcmp(section, ps->section) != 0) {
        if (skipped(ps, section))
            return 1;
        snprintf(ps->why, sizeof(ps->why), "unknown section '[%s]' (want [%s])", section,
                 ps->section);
        return 0;
    }
    if (!(e = sw_cfg_find(ps->tab, ps->n, name))) {
        snprintf(ps->why, sizeof(ps->why), "unknown key '%s'", name);
        return 0;
    }
    i = (size_t)(e - ps->tab);
    if (ps->seen[i]) {
        snprintf(ps->why, sizeof(ps->why), "key '%s' given twice", name);
        return 0;
    }
    if (sw_cfg_set(ps->tab, ps->n, ps->obj, name, value, ps->why, sizeof(ps->why)) < 0)
        return 0;
    ps->seen[i] = true;
    return 1;
}

/* inih reads a line into INI_MAX_LINE bytes and takes the rest of a longer one
 * for the next line; refuse such a line rather than read half a value.  The
 * line number of the first one too long, or 0. */
static int
long_line(const char *text, size_t len)
{
    size_t start = 0;
    int line = 1;

    for (size_t i = 0; i <= len; i++) {
        if (i == len || text[i] == '\n') {
            if (i - start > INI_MAX_LINE - 2)
                return line;
            start = i + 1;
            line++;
        }
    }
    return 0;
}

int
sw_cfgfile_parse(const struct sw_cfg_entry *tab, size_t n, void *obj, const char *name,
                 const char *text, size_t len, const char *section, const char *const *skip,
                 char *why, size_t whylen)
{
    struct parse_state *ps;
    char *copy;
    int line, err = 0;

    if (len > SW_CFGFILE_MAX_BYTES) {
        snprintf(why, whylen, "%s: larger than %d bytes", name, SW_CFGFILE_MAX_BYTES);
        return -SW_ECONFIG;
    }
    if (memchr(text, '\0', len)) {
        snprintf(why, whylen, "%s: holds a NUL byte (not a text file)", name);
        return -SW_ECONFIG;
    }
    if ((line = long_line(text, len)) > 0) {
        snprintf(why, whylen, "%s:%d: line longer than %d bytes", name, line, INI_MAX_LINE - 2);
        return -SW_ECONFIG;
    }
    if (!(copy = sw_malloc(len + 1)))
        return -SW_ENOMEM;
    if (!(ps = sw_calloc(1, sizeof(*ps))) || !(ps->seen = sw_calloc(n ? n : 1, sizeof(bool)))) {
        err = -SW_ENOMEM;
        goto out_free_copy;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    ps->tab = tab;
    ps->n = n;
    ps->obj = obj;
    ps->section = section;
    ps->skip = skip;
    if ((line = ini_parse_string(copy, on_pair, ps)) != 0) {
        snprintf(why, whylen, "%s:%d: %s", name, line,
                 ps->why[0] ? ps->why : "syntax error (want [section] or key = value)");
        err = -SW_ECONFIG;
    }
out_free_copy:
    if (ps)
        sw_free(ps->seen);
    sw_free(ps);
    sw_free(copy);
    return err;
}

int
sw_cfgfile_load(const struct sw_cfg_entry *tab, size_t n, void *obj, const char *path,
                const char *section, const char *const *skip, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t len;
    int err;

    if (!f) {
        snprintf(why, whylen, "cannot open '%s': %s", path, strerror(errno));
        return -SW_ECONFIG;
    }
    if (!(buf = sw_malloc(SW_CFGFILE_MAX_BYTES + 1))) {
        fclose(f);
        return -SW_ENOMEM;
    }
    len = fread(buf, 1, SW_CFGFILE_MAX_BYTES + 1, f);
    if (ferror(f)) {
        snprintf(why, whylen, "cannot read '%s': %s", path, strerror(errno));
        err = -SW_ECONFIG;
    } else {
        err = sw_cfgfile_parse(tab, n, obj, path, buf, len, section, skip, why, whylen);
    }
    fclose(f);
    sw_free(buf);
    return err;
}
