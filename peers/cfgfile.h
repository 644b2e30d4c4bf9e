/*
 * cfgfile.h - a program's options read from an INI file (swarmd --config).
 *
 * The file is read through the same table as the command line (src/cfg.h),
 * so every option has a key of the same name and the same checks: the key
 * "threads" is the option --threads.  The lines that apply are those before
 * any section header and those in the section named `section` (swarmd: the
 * command, "[join]"); a section named in `skip` is read past untouched, so
 * that one file can serve several commands, and any other section is an
 * error.  Refusals name the file and the line: an unknown key or section, a
 * key given twice, a value out of range, a line longer than inih reads whole.
 *
 *   char why[512];
 *   if (sw_cfgfile_load(tab, n, &opts, "/etc/swarm/a.conf", "join", others,
 *                       why, sizeof(why)) < 0)
 *       fprintf(stderr, "swarmd: %s\n", why);   -> "/etc/swarm/a.conf:4: unknown key 'treads'"
 *
 * The table's defaults are not applied here: the caller sets them first, and
 * applies its command line after, so that the command line wins.  On an
 * error `obj` may have taken some of the file's values.
 */
#ifndef SW_CFGFILE_H
#define SW_CFGFILE_H

#include "sw.h"

#include "cfg.h"

#define SW_CFGFILE_MAX_BYTES (1 << 20)

/*
 * Parse the text `text` (len bytes, no NUL) as the file `name` (used in the
 * messages only).  skip: a NULL-terminated list of sections to pass over, or
 * NULL.  0, or -SW_ECONFIG with "NAME:LINE: why" (or "NAME: why") in why[].
 */
int sw_cfgfile_parse(const struct sw_cfg_entry *tab, size_t n, void *obj, const char *name,
                     const char *text, size_t len, const char *section,
                     const char *const *skip, char *why, size_t whylen) SW_WARN_UNUSED;

/* Read the file `path` and parse it as above; -SW_ECONFIG too when it cannot
 * be read (why[] says so), -SW_ENOMEM. */
int sw_cfgfile_load(const struct sw_cfg_entry *tab, size_t n, void *obj, const char *path,
                    const char *section, const char *const *skip, char *why,
                    size_t whylen) SW_WARN_UNUSED;

#endif
