/*
 * ckpt.c - checkpoints (see ckpt.h for the format and the protocol).
 */
#define _GNU_SOURCE /* sync_file_range */
#include "sw.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <omp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "hex.h"
#include "hfconfig.h"
#include "sim.h"

#define MANIFEST "manifest.json"
#define COMMIT "COMMIT"
#define PATH_LEN 4096
#define DIR_MAX 3800 /* longest checkpoint folder name: room for what we append */

/* snprintf for paths; the callers check the folder's length (DIR_MAX) up front. */
static void SW_PRINTF(3, 4)
pathf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

/* ---- small helpers ---- */

static void
hash_hex(const uint8_t *h, char *hex)
{
    sw_hex_encode(hex, h, SW_CKPT_HASH_BYTES);
}

static int
hex_hash(const char *hex, uint8_t *h)
{
    if (!hex || strlen(hex) != 2 * SW_CKPT_HASH_BYTES ||
        sw_hex_decode(h, SW_CKPT_HASH_BYTES, hex) < 0)
        return -SW_EFORMAT;
    return 0;
}

static void
blake2b(uint8_t *out, const void *buf, size_t len)
{
    crypto_generichash(out, SW_CKPT_HASH_BYTES, buf, len, NULL, 0);
}

static int
fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), err = 0;

    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        err = -errno;
    close(fd);
    return err;
}

static int
pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -SW_EIO;
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Read a whole small file into a NUL-terminated buffer. */
static int
slurp(const char *path, char **out, size_t *len)
{
    struct stat sb;
    char *buf;
    int fd, err;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    if (fstat(fd, &sb) < 0) {
        err = -errno;
        close(fd);
        return err;
    }
    if (sb.st_size > (off_t)SW_ST_HEADER_MAX) {
        close(fd);
        return -SW_EFORMAT;
    }
    if (!(buf = sw_malloc((size_t)sb.st_size + 1))) {
        close(fd);
        return -SW_ENOMEM;
    }
    if ((err = pread_all(fd, buf, (size_t)sb.st_size, 0)) < 0) {
        sw_free(buf);
        close(fd);
        return err;
    }
    close(fd);
    buf[sb.st_size] = '\0';
    *out = buf;
    *len = (size_t)sb.st_size;
    return 0;
}

/* Remove a flat folder (ours hold files only): COMMIT first, so a removal
 * cut short leaves a torn step, never a complete-looking partial one. */
static int
remove_flat(const char *path)
{
    char p[PATH_LEN];
    DIR *d;
    struct dirent *e;
    int err = 0;

    pathf(p, sizeof(p), "%s/" COMMIT, path);
    if (unlink(p) == 0)
        (void)fsync_path(path);
    if (!(d = opendir(path)))
        return errno == ENOENT ? 0 : -errno;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        pathf(p, sizeof(p), "%s/%s", path, e->d_name);
        if (unlink(p) < 0 && errno != ENOENT)
            err = -errno;
    }
    closedir(d);
    if (rmdir(path) < 0 && err == 0)
        err = -errno;
    return err;
}

/* "step-%08d" exactly; the step or -1. */
static int
parse_step_name(const char *name)
{
    long v = 0;

    if (strncmp(name, "step-", 5) != 0 || strlen(name) != 13)
        return -1;
    for (int i = 5; i < 13; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        v = v * 10 + (name[i] - '0');
    }
    return (int)v;
}

static int
cmp_int_desc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (y > x) - (y < x);
}

/* Steps with a folder in dir, newest first. */
static int
scan_steps(const char *dir, int **out, int *n)
{
    DIR *d;
    struct dirent *e;
    int *v = NULL, cap = 0, k = 0;

    *out = NULL;
    *n = 0;
    if (!(d = opendir(dir)))
        return -errno;
    while ((e = readdir(d))) {
        int s = parse_step_name(e->d_name);
        if (s < 0)
            continue;
        if (k == cap) {
            int *nv = sw_realloc(v, (size_t)(cap = cap ? 2 * cap : 16) * sizeof(int));
            if (!nv) {
                sw_free(v);
                closedir(d);
                return -SW_ENOMEM;
            }
            v = nv;
        }
        v[k++] = s;
    }
    closedir(d);
    if (k)
        qsort(v, (size_t)k, sizeof(int), cmp_int_desc);
    *out = v;
    *n = k;
    return 0;
}

static bool
has_commit(const char *dir, int step)
{
    char p[PATH_LEN];
    pathf(p, sizeof(p), "%s/step-%08d/" COMMIT, dir, step);
    return access(p, F_OK) == 0;
}

/* Keep the keep newest committed steps; drop older ones, torn ones and leftovers. */
static void
prune(const char *dir, int keep, int current)
{
    char p[PATH_LEN];
    int *steps, n, kept = 0, err;
    DIR *d;
    struct dirent *e;

    if ((err = scan_steps(dir, &steps, &n)) < 0)
        return;
    for (int i = 0; i < n; i++) {
        bool committed = has_commit(dir, steps[i]);
        if (steps[i] == current)
            committed = true;
        if (committed && (keep <= 0 || kept < keep)) {
            kept++;
            continue;
        }
        pathf(p, sizeof(p), "%s/step-%08d", dir, steps[i]);
        if ((err = remove_flat(p)) < 0)
            sw_log(SW_LOG_WARN, "cannot remove '%s': %s", p, sw_strerror(err));
        else
            sw_log(SW_LOG_DEBUG, "pruned '%s'%s", p, committed ? "" : " (torn)");
    }
    sw_free(steps);
    if ((d = opendir(dir))) {
        while ((e = readdir(d))) {
            if (strncmp(e->d_name, ".tmp-step-", 10) && strncmp(e->d_name, ".trash-step-", 12))
                continue;
            pathf(p, sizeof(p), "%s/%s", dir, e->d_name);
            (void)remove_flat(p);
        }
        closedir(d);
    }
    (void)fsync_path(dir);
}

/* ---- writer ---- */

static json_t *
model_json(const struct sw_model_config *c)
{
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b}", "vocab_size",
                     c->vocab_size, "d_model", c->d_model, "n_layers", c->n_layers, "n_heads",
                     c->n_heads, "n_kv_heads", c->n_kv_heads, "ffn_hidden", c->ffn_hidden,
                     "seq_len", c->seq_len, "rope_theta", (double)c->rope_theta, "rms_eps",
                     (double)c->rms_eps, "tied", c->tied);
}

static json_t *
optim_json(const struct sw_optim_config *o)
{
    return json_pack("{s:f, s:f, s:i, s:i, s:f, s:f, s:f, s:f, s:f}", "lr", (double)o->lr,
                     "min_lr_frac", (double)o->min_lr_frac, "warmup_steps", o->warmup_steps,
                     "max_steps", o->max_steps, "beta1", (double)o->beta1, "beta2",
                     (double)o->beta2, "eps", (double)o->eps, "weight_decay",
                     (double)o->weight_decay, "grad_clip", (double)o->grad_clip);
}

static json_t *
u64_json(uint64_t x, bool hex)
{
    char b[32];
    snprintf(b, sizeof(b), hex ? "%016" PRIx64 : "%" PRIu64, x);
    return json_string(b);
}

/*
 * Writing a step's data files.  Three kinds of work overlap: copying the
 * bytes into the page cache (write), the disk taking them (writeback, started
 * per chunk with sync_file_range so that it runs while we compute), and the
 * per-tensor BLAKE2b-256 (about 1 GB/s a core on the development VM: as slow
 * as its disk).  The hashes depend only on the snapshot in memory, never on
 * the file, so a helper thread hashes tensors, largest first, from the moment
 * the files are opened; the calling thread writes every file, then takes
 * tensors off the same list until none is left.  Only then is each file
 * fsync'ed (by then most of it is on disk), renamed into place and its header
 * hashed; so the order "data, fsync, then the manifest" of ckpt.h is
 * unchanged.  The #ifdef below is the one place a Linux-only call needs a
 * fallback, too small for a header of its own.
 */

#define WRITE_CHUNK ((size_t)8 << 20) /* bytes per write() + writeback start */

/* Start writing [off, off + len) of fd back to disk without waiting for it,
 * so that the fsync at the end finds most of the file there (Linux only;
 * elsewhere the fsync does all of it). */
static void
start_writeback(int fd, uint64_t off, size_t len)
{
#ifdef SYNC_FILE_RANGE_WRITE
    (void)sync_file_range(fd, (off64_t)off, (off64_t)len, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd;
    (void)off;
    (void)len;
#endif
}

struct hash_job {
    const void *p;
    size_t len;
    uint8_t h[SW_CKPT_HASH_BYTES];
};

/* Tensors to hash, shared by the writer thread and one helper. */
struct hash_pool {
    struct hash_job *jobs;        /* [n], stage-major, then params/m/v, then layout order */
    struct hash_job **order;      /* [n] the same, largest first */
    int n;
    int next;                     /* next index into order to take (atomic) */
    int stop;                     /* set on failure: take no more (atomic) */
};

static void
hash_pool_run(struct hash_pool *hp)
{
    for (;;) {
        struct hash_job *j;
        int i;

        if (__atomic_load_n(&hp->stop, __ATOMIC_RELAXED))
            return;
        if ((i = __atomic_fetch_add(&hp->next, 1, __ATOMIC_RELAXED)) >= hp->n)
            return;
        j = hp->order[i];
        blake2b(j->h, j->p, j->len);
    }
}

static void *
hash_helper(void *arg)
{
    hash_pool_run(arg);
    return NULL;
}

static int
cmp_job_len_desc(const void *a, const void *b)
{
    const struct hash_job *x = *(struct hash_job *const *)a, *y = *(struct hash_job *const *)b;
    if (x->len != y->len)
        return x->len < y->len ? 1 : -1;
    return (x > y) - (x < y);
}

/* One stage's data file while it is being written. */
struct stage_file {
    struct sw_st_writer w;
    bool open;
    char fname[64];
    char (*names)[SW_NAME_MAX + 8]; /* [3 * ntensors]: name, name.adam_m, name.adam_v */
};

static const char *const moment_suffix[3] = {"", ".adam_m", ".adam_v"};

static const float *
view_slab(const struct sw_ckpt_stage_view *v, int k)
{
    return k == 0 ? v->params : k == 1 ? v->m : v->v;
}

/* Name the tensors and write the header to a temporary file in tmpdir. */
static int
stage_file_open(struct stage_file *sf, const char *tmpdir, const struct sw_ckpt_run *run,
                const struct sw_ckpt_stage_view *v)
{
    const struct sw_stage_layout *lay = v->lay;
    int n = 3 * lay->ntensors, err;
    struct sw_st_desc *descs = sw_calloc((size_t)n, sizeof(*descs));
    char path[PATH_LEN], stepbuf[32], stagebuf[32];
    struct sw_st_meta meta[3] = {{"format", "swarm-checkpoint"}, {"step", stepbuf},
                                 {"stage", stagebuf}};

    memset(sf, 0, sizeof(*sf));
    if (!descs || !(sf->names = sw_calloc((size_t)n, sizeof(*sf->names)))) {
        err = -SW_ENOMEM;
        goto out;
    }
    snprintf(sf->fname, sizeof(sf->fname), "stage-%03d-of-%03d.safetensors", lay->s, lay->S);
    pathf(path, sizeof(path), "%s/%s", tmpdir, sf->fname);
    snprintf(stepbuf, sizeof(stepbuf), "%d", run->step);
    snprintf(stagebuf, sizeof(stagebuf), "%d", lay->s);
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < lay->ntensors; i++) {
            const struct sw_tensor_info *t = &lay->tensors[i];
            struct sw_st_desc *d = &descs[k * lay->ntensors + i];
            snprintf(sf->names[k * lay->ntensors + i], sizeof(sf->names[0]), "%s%s", t->name,
                     moment_suffix[k]);
            d->name = sf->names[k * lay->ntensors + i];
            d->dtype = SW_DTYPE_F32;
            d->ndim = t->ndim;
            d->shape[0] = t->shape[0];
            d->shape[1] = t->shape[1];
            d->nbytes = t->numel * sizeof(float);
        }
    }
    if ((err = sw_safetensors_writer_open(&sf->w, path, descs, n, meta, 3)) < 0)
        goto out;
    sf->open = true;
out:
    sw_free(descs);
    return err;
}

/* Every tensor's bytes, in chunks, each chunk's writeback started. */
static int
stage_file_write(struct stage_file *sf, const struct sw_ckpt_stage_view *v)
{
    const struct sw_stage_layout *lay = v->lay;
    int err;

    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < lay->ntensors; i++) {
            const struct sw_tensor_info *t = &lay->tensors[i];
            const uint8_t *p = (const uint8_t *)(view_slab(v, k) + t->offset);
            size_t left = t->numel * sizeof(float);

            while (left > 0) {
                size_t len = SW_MIN(left, WRITE_CHUNK);
                uint64_t off = sf->w.data_start + sf->w.written;
                if ((err = sw_safetensors_writer_put(&sf->w, p, len)) < 0)
                    return err;
                start_writeback(sf->w.f.fd, off, len);
                p += len;
                left -= len;
            }
        }
    }
    return 0;
}

/* fsync and rename the file into place, hash its header as it is on disk,
 * and add the file and its tensors (hashes from jobs[3 * ntensors]) to the
 * manifest. */
static int
stage_file_commit(struct stage_file *sf, const struct sw_ckpt_stage_view *v,
                  const struct hash_job *jobs, json_t *files, json_t *tensors)
{
    const struct sw_stage_layout *lay = v->lay;
    char path[PATH_LEN], hex[2 * SW_CKPT_HASH_BYTES + 1], hdr_hex[2 * SW_CKPT_HASH_BYTES + 1];
    uint8_t h[SW_CKPT_HASH_BYTES], *hdr = NULL;
    uint64_t off, data_start = sf->w.data_start;
    int fd, err;

    pathf(path, sizeof(path), "%s", sf->w.f.path);
    sf->open = false;
    if ((err = sw_safetensors_writer_commit(&sf->w)) < 0)
        return err;
    /* the header's hash, read back from what is now on disk */
    if (!(hdr = sw_malloc((size_t)data_start)))
        return -SW_ENOMEM;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot open '%s': %s", path, sw_strerror(err));
        goto out;
    }
    err = pread_all(fd, hdr, (size_t)data_start, 0);
    close(fd);
    if (err < 0) {
        sw_log(SW_LOG_ERROR, "cannot read '%s': %s", path, sw_strerror(err));
        goto out;
    }
    blake2b(h, hdr, (size_t)data_start);
    hash_hex(h, hdr_hex);
    off = data_start;
    for (int j = 0; j < 3 * lay->ntensors; j++) {
        const struct sw_tensor_info *t = &lay->tensors[j % lay->ntensors];
        json_t *jt, *shape;

        hash_hex(jobs[j].h, hex);
        if (!(shape = json_array()))
            goto out_nomem;
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        jt = json_pack("{s:s, s:I, s:I, s:s, s:o, s:i, s:s}", "file", sf->fname, "offset",
                       (json_int_t)off, "length", (json_int_t)(t->numel * sizeof(float)), "dtype",
                       "F32", "shape", shape, "stage", lay->s, "blake2b", hex);
        if (!jt || json_object_set_new(tensors, sf->names[j], jt) < 0)
            goto out_nomem;
        off += t->numel * sizeof(float);
    }
    if (json_object_set_new(files, sf->fname,
                            json_pack("{s:I, s:I, s:s}", "bytes", (json_int_t)off,
                                      "header_length", (json_int_t)data_start, "header_blake2b",
                                      hdr_hex)) < 0)
        goto out_nomem;
    goto out;
out_nomem:
    err = -SW_ENOMEM;
out:
    sw_free(hdr);
    return err;
}

static void
stage_file_release(struct stage_file *sf)
{
    if (sf->open)
        sw_safetensors_writer_abort(&sf->w);
    sf->open = false;
    sw_free(sf->names);
    sf->names = NULL;
}

/* Step 1 of the commit protocol: the n data files in tmpdir, each fsync'ed,
 * and their entries in the manifest. */
static int
write_data_files(const char *tmpdir, const struct sw_ckpt_run *run,
                 const struct sw_ckpt_stage_view *stages, int n, json_t *files, json_t *tensors)
{
    struct stage_file *sf = sw_calloc((size_t)n, sizeof(*sf));
    struct hash_pool hp = {0};
    int *base = sw_calloc((size_t)n + 1, sizeof(*base)), err = 0;
    pthread_t helper;
    bool helping = false;
    double t0 = sw_now_s(), t_write = 0, t_hash = 0;

    if (!sf || !base) {
        err = -SW_ENOMEM;
        goto out;
    }
    for (int s = 0; s < n; s++)
        base[s + 1] = base[s] + 3 * stages[s].lay->ntensors;
    hp.n = base[n];
    hp.jobs = sw_calloc((size_t)(hp.n ? hp.n : 1), sizeof(*hp.jobs));
    hp.order = sw_calloc((size_t)(hp.n ? hp.n : 1), sizeof(*hp.order));
    if (!hp.jobs || !hp.order) {
        err = -SW_ENOMEM;
        goto out;
    }
    for (int s = 0; s < n; s++) {
        const struct sw_stage_layout *lay = stages[s].lay;
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < lay->ntensors; i++) {
                struct hash_job *j = &hp.jobs[base[s] + k * lay->ntensors + i];
                j->p = view_slab(&stages[s], k) + lay->tensors[i].offset;
                j->len = lay->tensors[i].numel * sizeof(float);
            }
    }
    for (int i = 0; i < hp.n; i++)
        hp.order[i] = &hp.jobs[i];
    qsort(hp.order, (size_t)hp.n, sizeof(*hp.order), cmp_job_len_desc);
    /* no helper (thread limit): this thread hashes everything after writing */
    helping = pthread_create(&helper, NULL, hash_helper, &hp) == 0;
    for (int s = 0; s < n && err == 0; s++)
        if ((err = stage_file_open(&sf[s], tmpdir, run, &stages[s])) == 0)
            err = stage_file_write(&sf[s], &stages[s]);
    t_write = sw_now_s();
    if (err < 0)
        __atomic_store_n(&hp.stop, 1, __ATOMIC_RELAXED);
    hash_pool_run(&hp);
    if (helping)
        pthread_join(helper, NULL);
    t_hash = sw_now_s();
    for (int s = 0; s < n && err == 0; s++)
        err = stage_file_commit(&sf[s], &stages[s], &hp.jobs[base[s]], files, tensors);
    if (err == 0)
        sw_log(SW_LOG_DEBUG, "step %d: data written %.1f ms, hashed %.1f ms, fsync'ed %.1f ms "
                             "after the start", run->step, (t_write - t0) * 1e3,
               (t_hash - t0) * 1e3, (sw_now_s() - t0) * 1e3);
out:
    if (sf)
        for (int s = 0; s < n; s++)
            stage_file_release(&sf[s]);
    sw_free(hp.jobs);
    sw_free(hp.order);
    sw_free(base);
    sw_free(sf);
    return err;
}

static json_t *
manifest_new(const struct sw_ckpt_run *run, const struct sw_ckpt_stage_view *stages, int n)
{
    json_t *root, *ss, *cur = NULL;

    root = json_pack("{s:s, s:i, s:i, s:o, s:i, s:o, s:o, s:o, s:{s:i, s:f}}", "format",
                     "swarm-checkpoint", "version", SW_CKPT_VERSION, "step", run->step, "seed",
                     u64_json(run->seed, false), "stages", run->S, "micro",
                     u64_json(run->micro, false), "model", model_json(&run->cfg), "optim",
                     optim_json(&run->oc), "lr_schedule", "step", run->step, "lr",
                     (double)sw_lr_at(&run->oc, run->step));
    if (!root)
        return NULL;
    if (run->have_cursor) {
        cur = json_pack("{s:[o,o,o,o], s:o}", "rng", u64_json(run->cursor.rng[0], true),
                        u64_json(run->cursor.rng[1], true), u64_json(run->cursor.rng[2], true),
                        u64_json(run->cursor.rng[3], true), "drawn",
                        u64_json(run->cursor.drawn, false));
        json_object_set_new(root, "data_cursor", cur);
    }
    ss = json_array();
    for (int i = 0; i < n; i++) {
        const struct sw_ckpt_stage_view *v = &stages[i];
        json_array_append_new(ss, json_pack("{s:i, s:i, s:i, s:i, s:f, s:f, s:f}", "stage",
                                            v->lay->s, "first_layer", v->lay->l0, "end_layer",
                                            v->lay->l1, "optimizer_step", v->st.t, "lr_mult",
                                            (double)v->st.lr_mult, "last_norm",
                                            (double)v->st.last_norm, "last_norm_clipped",
                                            (double)v->st.last_norm_clipped));
    }
    json_object_set_new(root, "stage_state", ss);
    json_object_set_new(root, "files", json_object());
    json_object_set_new(root, "tensors", json_object());
    return root;
}

/* sw_ckpt_save up to its COMMIT, without the pruning. */
static int
save_commit(const char *dir, const struct sw_ckpt_run *run,
            const struct sw_ckpt_stage_view *stages, int n)
{
    char tmp[PATH_LEN], final[PATH_LEN], trash[PATH_LEN], p[PATH_LEN], line[256];
    char hex[2 * SW_CKPT_HASH_BYTES + 1];
    uint8_t h[SW_CKPT_HASH_BYTES];
    json_t *root = NULL;
    char *text = NULL;
    struct sw__afile f;
    bool made_tmp = false, moved_old = false;
    struct stat sb;
    int err;

    if (sodium_init() < 0)
        return -SW_EIO;
    if (strlen(dir) > DIR_MAX)
        return -ENAMETOOLONG;
    if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot create '%s': %s", dir, sw_strerror(err));
        return err;
    }
    pathf(tmp, sizeof(tmp), "%s/.tmp-step-%08d.%d", dir, run->step, (int)getpid());
    pathf(final, sizeof(final), "%s/step-%08d", dir, run->step);
    pathf(trash, sizeof(trash), "%s/.trash-step-%08d.%d", dir, run->step, (int)getpid());
    (void)remove_flat(tmp);
    if (mkdir(tmp, 0777) < 0) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot create '%s': %s", tmp, sw_strerror(err));
        return err;
    }
    made_tmp = true;
    if (!(root = manifest_new(run, stages, n))) {
        err = -SW_ENOMEM;
        goto out;
    }
    /* 1. data files, each fsync'ed */
    if ((err = write_data_files(tmp, run, stages, n, json_object_get(root, "files"),
                                json_object_get(root, "tensors"))) < 0)
        goto out;
    /* 2. the manifest, fsync'ed */
    if (!(text = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(17)))) {
        err = -SW_ENOMEM;
        goto out;
    }
    pathf(p, sizeof(p), "%s/" MANIFEST, tmp);
    if ((err = sw__afile_open(&f, p)) < 0)
        goto out;
    if ((err = sw__afile_write(&f, text, strlen(text))) < 0) {
        sw__afile_abort(&f);
        goto out;
    }
    if ((err = sw__afile_commit(&f)) < 0)
        goto out;
    blake2b(h, text, strlen(text));
    hash_hex(h, hex);
    /* 3. the folder under its final name, DIR fsync'ed */
    if (stat(final, &sb) == 0) {
        (void)remove_flat(trash);
        if (rename(final, trash) < 0) {
            err = -errno;
            sw_log(SW_LOG_ERROR, "cannot move '%s' aside: %s", final, sw_strerror(err));
            goto out;
        }
        moved_old = true;
    }
    if (rename(tmp, final) < 0) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot rename '%s' to '%s': %s", tmp, final, sw_strerror(err));
        goto out;
    }
    made_tmp = false;
    if ((err = fsync_path(dir)) < 0) {
        sw_log(SW_LOG_ERROR, "cannot fsync '%s': %s", dir, sw_strerror(err));
        goto out;
    }
    /* 4. COMMIT (fsync'ed, renamed in, the step folder fsync'ed) */
    pathf(p, sizeof(p), "%s/" COMMIT, final);
    snprintf(line, sizeof(line), "swarm-checkpoint %d\nstep %d\nmanifest-blake2b %s\n",
             SW_CKPT_VERSION, run->step, hex);
    if ((err = sw__afile_open(&f, p)) < 0)
        goto out;
    if ((err = sw__afile_write(&f, line, strlen(line))) < 0) {
        sw__afile_abort(&f);
        goto out;
    }
    if ((err = sw__afile_commit(&f)) < 0)
        goto out;
    if (moved_old)
        (void)remove_flat(trash);
out:
    if (made_tmp)
        (void)remove_flat(tmp);
    /* a re-save that failed before its rename puts the old step back */
    if (err < 0 && moved_old && stat(final, &sb) < 0 && rename(trash, final) == 0)
        (void)fsync_path(dir);
    if (err < 0)
        sw_log(SW_LOG_ERROR, "checkpoint of step %d in '%s' failed: %s", run->step, dir,
               sw_strerror(err));
    free(text);
    json_decref(root);
    return err;
}

int
sw_ckpt_save(const char *dir, const struct sw_ckpt_run *run,
             const struct sw_ckpt_stage_view *stages, int n, int keep)
{
    int err = save_commit(dir, run, stages, n);

    if (err == 0)
        prune(dir, keep, run->step);
    return err;
}

/* ---- reader ---- */

static int
cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const struct sw_ckpt_tensor *)a)->name,
                  ((const struct sw_ckpt_tensor *)b)->name);
}

const struct sw_ckpt_tensor *
sw_ckpt_find(const struct sw_ckpt *ck, const char *name)
{
    struct sw_ckpt_tensor key = {.name = (char *)name};
    return bsearch(&key, ck->tensors, (size_t)ck->ntensors, sizeof(key), cmp_tensor);
}

void
sw_ckpt_close(struct sw_ckpt *ck)
{
    for (int i = 0; i < ck->nfiles; i++) {
        if (ck->fds && ck->fds[i] >= 0)
            close(ck->fds[i]);
        if (ck->file_names)
            sw_free(ck->file_names[i]);
    }
    for (int i = 0; i < ck->ntensors; i++)
        sw_free(ck->tensors[i].name);
    sw_free(ck->fds);
    sw_free(ck->file_names);
    sw_free(ck->tensors);
    sw_free(ck->stage_state);
    sw_free(ck->path);
    memset(ck, 0, sizeof(*ck));
}

static int
get_u64(json_t *o, const char *key, bool hex, uint64_t *v)
{
    const char *s = json_string_value(json_object_get(o, key));
    char *end;

    if (!s || !*s)
        return -SW_EFORMAT;
    errno = 0;
    *v = strtoull(s, &end, hex ? 16 : 10);
    return (*end || errno) ? -SW_EFORMAT : 0;
}

static int
get_int(json_t *o, const char *key, int lo, int hi, int *v)
{
    json_t *j = json_object_get(o, key);
    json_int_t x;

    if (!json_is_integer(j))
        return -SW_EFORMAT;
    x = json_integer_value(j);
    if (x < lo || x > hi)
        return -SW_EFORMAT;
    *v = (int)x;
    return 0;
}

static int
get_float(json_t *o, const char *key, float *v)
{
    json_t *j = json_object_get(o, key);

    if (!json_is_number(j))
        return -SW_EFORMAT;
    *v = (float)json_number_value(j);
    return 0;
}

#define BAD(...)                                                               \
    do {                                                                       \
        sw_log(SW_LOG_WARN, __VA_ARGS__);                                      \
        err = -SW_EFORMAT;                                                     \
        goto out;                                                              \
    } while (0)

static int
parse_manifest(struct sw_ckpt *ck, json_t *root, const char *mpath)
{
    struct sw_ckpt_run *r = &ck->run;
    json_t *j, *files, *tensors, *val;
    const char *key, *s;
    int err = 0, i;

    s = json_string_value(json_object_get(root, "format"));
    if (!s || strcmp(s, "swarm-checkpoint") || get_int(root, "version", 1, 1000, &i) < 0)
        BAD("'%s': not a swarm checkpoint manifest", mpath);
    if (i != SW_CKPT_VERSION)
        BAD("'%s': format version %d, this build reads %d", mpath, i, SW_CKPT_VERSION);
    if (get_int(root, "step", 0, INT32_MAX, &r->step) < 0 ||
        get_int(root, "stages", 1, 1 << 20, &r->S) < 0 || get_u64(root, "seed", false, &r->seed) < 0 ||
        get_u64(root, "micro", false, &r->micro) < 0)
        BAD("'%s': bad step, stages, seed or micro", mpath);
    j = json_object_get(root, "model");
    if (get_int(j, "vocab_size", 1, INT32_MAX, &r->cfg.vocab_size) < 0 ||
        get_int(j, "d_model", 1, INT32_MAX, &r->cfg.d_model) < 0 ||
        get_int(j, "n_layers", 1, INT32_MAX, &r->cfg.n_layers) < 0 ||
        get_int(j, "n_heads", 1, INT32_MAX, &r->cfg.n_heads) < 0 ||
        get_int(j, "n_kv_heads", 1, INT32_MAX, &r->cfg.n_kv_heads) < 0 ||
        get_int(j, "ffn_hidden", 1, INT32_MAX, &r->cfg.ffn_hidden) < 0 ||
        get_int(j, "seq_len", 1, INT32_MAX, &r->cfg.seq_len) < 0 ||
        get_float(j, "rope_theta", &r->cfg.rope_theta) < 0 ||
        get_float(j, "rms_eps", &r->cfg.rms_eps) < 0 || !json_is_boolean(json_object_get(j, "tied")))
        BAD("'%s': bad \"model\"", mpath);
    r->cfg.tied = json_is_true(json_object_get(j, "tied"));
    j = json_object_get(root, "optim");
    if (get_float(j, "lr", &r->oc.lr) < 0 || get_float(j, "min_lr_frac", &r->oc.min_lr_frac) < 0 ||
        get_int(j, "warmup_steps", 0, INT32_MAX, &r->oc.warmup_steps) < 0 ||
        get_int(j, "max_steps", 0, INT32_MAX, &r->oc.max_steps) < 0 ||
        get_float(j, "beta1", &r->oc.beta1) < 0 || get_float(j, "beta2", &r->oc.beta2) < 0 ||
        get_float(j, "eps", &r->oc.eps) < 0 || get_float(j, "weight_decay", &r->oc.weight_decay) < 0 ||
        get_float(j, "grad_clip", &r->oc.grad_clip) < 0)
        BAD("'%s': bad \"optim\"", mpath);
    if ((j = json_object_get(root, "data_cursor"))) {
        json_t *rng = json_object_get(j, "rng");
        if (json_array_size(rng) != 4 || get_u64(j, "drawn", false, &r->cursor.drawn) < 0)
            BAD("'%s': bad \"data_cursor\"", mpath);
        for (i = 0; i < 4; i++) {
            json_t *w = json_pack("{s:O}", "x", json_array_get(rng, (size_t)i));
            int e = get_u64(w, "x", true, &r->cursor.rng[i]);
            json_decref(w);
            if (e < 0)
                BAD("'%s': bad \"data_cursor\"", mpath);
        }
        r->have_cursor = true;
    }
    j = json_object_get(root, "stage_state");
    if (json_array_size(j) != (size_t)r->S)
        BAD("'%s': \"stage_state\" does not list %d stages", mpath, r->S);
    if (!(ck->stage_state = sw_calloc((size_t)r->S, sizeof(*ck->stage_state)))) {
        err = -SW_ENOMEM;
        goto out;
    }
    for (i = 0; i < r->S; i++) {
        json_t *e = json_array_get(j, (size_t)i);
        struct sw_ckpt_stage_state *st = &ck->stage_state[i];
        int si;
        if (get_int(e, "stage", 0, r->S - 1, &si) < 0 || si != i ||
            get_int(e, "optimizer_step", 0, INT32_MAX, &st->t) < 0 ||
            get_float(e, "lr_mult", &st->lr_mult) < 0 || get_float(e, "last_norm", &st->last_norm) < 0 ||
            get_float(e, "last_norm_clipped", &st->last_norm_clipped) < 0)
            BAD("'%s': bad \"stage_state\" entry %d", mpath, i);
    }
    /* files */
    files = json_object_get(root, "files");
    if (!json_is_object(files) || json_object_size(files) == 0)
        BAD("'%s': no \"files\"", mpath);
    ck->nfiles = (int)json_object_size(files);
    ck->file_names = sw_calloc((size_t)ck->nfiles, sizeof(char *));
    ck->fds = sw_malloc((size_t)ck->nfiles * sizeof(int));
    if (!ck->file_names || !ck->fds) {
        err = -SW_ENOMEM;
        goto out;
    }
    for (i = 0; i < ck->nfiles; i++)
        ck->fds[i] = -1;
    i = 0;
    json_object_foreach(files, key, val) {
        char p[PATH_LEN];
        struct stat sb;
        uint8_t want[SW_CKPT_HASH_BYTES], got[SW_CKPT_HASH_BYTES], *hdr;
        json_int_t bytes, hlen;

        if (strchr(key, '/') || !strcmp(key, "..") || !strcmp(key, "."))
            BAD("'%s': bad file name '%.64s'", mpath, key);
        if (!(ck->file_names[i] = sw_strdup(key))) {
            err = -SW_ENOMEM;
            goto out;
        }
        bytes = json_integer_value(json_object_get(val, "bytes"));
        hlen = json_integer_value(json_object_get(val, "header_length"));
        if (bytes <= 0 || hlen < 8 || hlen > bytes || (uint64_t)hlen > SW_ST_HEADER_MAX ||
            hex_hash(json_string_value(json_object_get(val, "header_blake2b")), want) < 0)
            BAD("'%s': bad entry of file '%s'", mpath, key);
        pathf(p, sizeof(p), "%s/%s", ck->path, key);
        if ((ck->fds[i] = open(p, O_RDONLY | O_CLOEXEC)) < 0) {
            err = -errno;
            sw_log(SW_LOG_WARN, "cannot open '%s': %s", p, sw_strerror(err));
            goto out;
        }
        if (fstat(ck->fds[i], &sb) < 0 || (uint64_t)sb.st_size != (uint64_t)bytes) {
            sw_log(SW_LOG_WARN, "'%s' holds %lld bytes, the manifest says %lld", p,
                   (long long)sb.st_size, (long long)bytes);
            err = -SW_EHASH;
            goto out;
        }
        if (!(hdr = sw_malloc((size_t)hlen))) {
            err = -SW_ENOMEM;
            goto out;
        }
        err = pread_all(ck->fds[i], hdr, (size_t)hlen, 0);
        if (err == 0)
            blake2b(got, hdr, (size_t)hlen);
        sw_free(hdr);
        if (err < 0) {
            sw_log(SW_LOG_WARN, "cannot read '%s': %s", p, sw_strerror(err));
            goto out;
        }
        if (memcmp(got, want, sizeof(got)) != 0) {
            sw_log(SW_LOG_WARN, "'%s': safetensors header checksum mismatch", p);
            err = -SW_EHASH;
            goto out;
        }
        i++;
    }
    /* tensors */
    tensors = json_object_get(root, "tensors");
    if (!json_is_object(tensors) || json_object_size(tensors) == 0)
        BAD("'%s': no \"tensors\"", mpath);
    if (!(ck->tensors = sw_calloc(json_object_size(tensors), sizeof(*ck->tensors)))) {
        err = -SW_ENOMEM;
        goto out;
    }
    json_object_foreach(tensors, key, val) {
        struct sw_ckpt_tensor *t = &ck->tensors[ck->ntensors];
        const char *fn = json_string_value(json_object_get(val, "file"));
        json_t *shape = json_object_get(val, "shape");
        json_int_t off = json_integer_value(json_object_get(val, "offset"));
        json_int_t len = json_integer_value(json_object_get(val, "length"));
        uint64_t numel = 1;
        int dt = sw_dtype_parse(json_string_value(json_object_get(val, "dtype")) ?
                                    json_string_value(json_object_get(val, "dtype")) : "");
        struct stat sb;

        if (!(t->name = sw_strdup(key))) {
            err = -SW_ENOMEM;
            goto out;
        }
        ck->ntensors++;
        t->file = -1;
        for (int f = 0; fn && f < ck->nfiles; f++)
            if (!strcmp(fn, ck->file_names[f]))
                t->file = f;
        if (t->file < 0 || dt < 0 || !json_is_array(shape) ||
            json_array_size(shape) > SW_ST_MAX_DIMS || off < 0 || len < 0 ||
            get_int(val, "stage", 0, r->S - 1, &t->stage) < 0 ||
            hex_hash(json_string_value(json_object_get(val, "blake2b")), t->hash) < 0)
            BAD("'%s': bad entry of tensor '%.128s'", mpath, key);
        t->dtype = (enum sw_dtype)dt;
        t->ndim = (int)json_array_size(shape);
        for (int d = 0; d < t->ndim; d++) {
            json_int_t x = json_integer_value(json_array_get(shape, (size_t)d));
            if (x < 0 || x > INT32_MAX)
                BAD("'%s': bad shape of tensor '%.128s'", mpath, key);
            t->shape[d] = x;
            numel *= (uint64_t)x;
        }
        t->offset = (uint64_t)off;
        t->length = (uint64_t)len;
        if (numel * sw_dtype_size(t->dtype) != t->length)
            BAD("'%s': tensor '%.128s' has %" PRIu64 " bytes for its shape", mpath, key, t->length);
        if (fstat(ck->fds[t->file], &sb) < 0 || t->offset + t->length > (uint64_t)sb.st_size)
            BAD("'%s': tensor '%.128s' lies past the end of '%s'", mpath, key,
                ck->file_names[t->file]);
        ck->bytes += t->length;
    }
    qsort(ck->tensors, (size_t)ck->ntensors, sizeof(*ck->tensors), cmp_tensor);
out:
    return err;
}

int
sw_ckpt_read_raw(const struct sw_ckpt *ck, const struct sw_ckpt_tensor *t, void *dst)
{
    uint8_t h[SW_CKPT_HASH_BYTES];
    int err;

    if ((err = pread_all(ck->fds[t->file], dst, (size_t)t->length, t->offset)) < 0) {
        sw_log(SW_LOG_WARN, "cannot read tensor '%s' from '%s/%s': %s", t->name, ck->path,
               ck->file_names[t->file], sw_strerror(err));
        return err;
    }
    blake2b(h, dst, (size_t)t->length);
    if (memcmp(h, t->hash, sizeof(h)) != 0) {
        sw_log(SW_LOG_WARN, "tensor '%s' in '%s/%s': checksum mismatch", t->name, ck->path,
               ck->file_names[t->file]);
        return -SW_EHASH;
    }
    return 0;
}

/* Check COMMIT against the manifest, parse it, hash every tensor. */
int
sw_ckpt_open_path(struct sw_ckpt *ck, const char *stepdir)
{
    char p[PATH_LEN], *commit = NULL, *text = NULL, hex[2 * SW_CKPT_HASH_BYTES + 1];
    char want[2 * SW_CKPT_HASH_BYTES + 1];
    uint8_t h[SW_CKPT_HASH_BYTES];
    size_t clen, tlen, maxlen = 0;
    json_t *root = NULL;
    json_error_t jerr;
    int version, step, err;
    void *buf = NULL;

    memset(ck, 0, sizeof(*ck));
    if (sodium_init() < 0)
        return -SW_EIO;
    if (strlen(stepdir) > DIR_MAX)
        return -ENAMETOOLONG;
    if (!(ck->path = sw_strdup(stepdir)))
        return -SW_ENOMEM;
    pathf(p, sizeof(p), "%s/" COMMIT, stepdir);
    if ((err = slurp(p, &commit, &clen)) < 0) {
        sw_log(SW_LOG_WARN, "'%s' is incomplete: no " COMMIT " marker (%s)", stepdir,
               sw_strerror(err));
        err = err == -SW_ENOENT ? -SW_ENOENT : err;
        goto out;
    }
    if (sscanf(commit, "swarm-checkpoint %d\nstep %d\nmanifest-blake2b %64s", &version, &step,
               want) != 3 || strlen(want) != 64) {
        sw_log(SW_LOG_WARN, "'%s': malformed " COMMIT " marker", p);
        err = -SW_EFORMAT;
        goto out;
    }
    pathf(p, sizeof(p), "%s/" MANIFEST, stepdir);
    if ((err = slurp(p, &text, &tlen)) < 0) {
        sw_log(SW_LOG_WARN, "cannot read '%s': %s", p, sw_strerror(err));
        if (err == -SW_ENOENT)
            err = -SW_EFORMAT; /* committed without a manifest: not a torn write */
        goto out;
    }
    blake2b(h, text, tlen);
    hash_hex(h, hex);
    if (strcmp(hex, want) != 0) {
        sw_log(SW_LOG_WARN, "manifest '%s': checksum mismatch (" COMMIT " names %.16s..., the "
                            "file hashes to %.16s...)", p, want, hex);
        err = -SW_EHASH;
        goto out;
    }
    if (!(root = json_loadb(text, tlen, JSON_REJECT_DUPLICATES, &jerr))) {
        sw_log(SW_LOG_WARN, "'%s': line %d: %s", p, jerr.line, jerr.text);
        err = -SW_EFORMAT;
        goto out;
    }
    if ((err = parse_manifest(ck, root, p)) < 0)
        goto out;
    if (ck->run.step != step) {
        sw_log(SW_LOG_WARN, "'%s': " COMMIT " says step %d, the manifest %d", stepdir, step,
               ck->run.step);
        err = -SW_EFORMAT;
        goto out;
    }
    for (int i = 0; i < ck->ntensors; i++)
        maxlen = SW_MAX(maxlen, (size_t)ck->tensors[i].length);
    if (!(buf = sw_malloc_big(maxlen ? maxlen : 1))) {
        err = -SW_ENOMEM;
        goto out;
    }
    for (int i = 0; i < ck->ntensors; i++)
        if ((err = sw_ckpt_read_raw(ck, &ck->tensors[i], buf)) < 0)
            goto out;
out:
    sw_free_big(buf);
    json_decref(root);
    sw_free(commit);
    sw_free(text);
    if (err < 0)
        sw_ckpt_close(ck);
    return err;
}

int
sw_ckpt_open(struct sw_ckpt *ck, const char *dir, int step)
{
    char p[PATH_LEN];
    int *steps = NULL, n, err;

    memset(ck, 0, sizeof(*ck));
    if (strlen(dir) > DIR_MAX)
        return -ENAMETOOLONG;
    if (step >= 0) {
        pathf(p, sizeof(p), "%s/step-%08d", dir, step);
        return sw_ckpt_open_path(ck, p);
    }
    if ((err = scan_steps(dir, &steps, &n)) < 0) {
        sw_log(SW_LOG_ERROR, "cannot read '%s': %s", dir, sw_strerror(err));
        return err;
    }
    err = -SW_ENOENT;
    for (int i = 0; i < n; i++) {
        pathf(p, sizeof(p), "%s/step-%08d", dir, steps[i]);
        if ((err = sw_ckpt_open_path(ck, p)) == 0) {
            if (i > 0)
                sw_log(SW_LOG_WARN, "using '%s', the newest complete checkpoint", p);
            break;
        }
        sw_log(SW_LOG_WARN, "skipping '%s': %s", p, sw_strerror(err));
        if (err == -SW_ENOMEM)
            break;
        err = -SW_ENOENT;
    }
    if (err == -SW_ENOENT)
        sw_log(SW_LOG_ERROR, "no complete checkpoint in '%s'", dir);
    sw_free(steps);
    return err;
}

int
sw_ckpt_read_stage(const struct sw_ckpt *ck, const struct sw_stage_layout *lay, float *params,
                   float *m, float *v, struct sw_ckpt_stage_state *st)
{
    static const char *suffix[3] = {"", ".adam_m", ".adam_v"};
    float *slab[3] = {params, m, v};
    char name[SW_NAME_MAX + 8];
    int owner = -1, err;
    bool warned = false;

    for (int i = 0; i < lay->ntensors; i++) {
        const struct sw_tensor_info *ti = &lay->tensors[i];
        for (int k = 0; k < 3; k++) {
            const struct sw_ckpt_tensor *t;
            if (!slab[k])
                continue;
            snprintf(name, sizeof(name), "%s%s", ti->name, suffix[k]);
            if (!(t = sw_ckpt_find(ck, name))) {
                sw_log(SW_LOG_ERROR, "'%s' has no tensor '%s'", ck->path, name);
                return -SW_ENOENT;
            }
            if (t->dtype != SW_DTYPE_F32 || t->ndim != ti->ndim || t->shape[0] != ti->shape[0] ||
                (ti->ndim == 2 && t->shape[1] != ti->shape[1])) {
                sw_log(SW_LOG_ERROR, "tensor '%s' in '%s': %s of %d dims, want F32 of the "
                                     "model's shape", name, ck->path, sw_dtype_name(t->dtype),
                       t->ndim);
                return -SW_ESHAPE;
            }
            if ((err = sw_ckpt_read_raw(ck, t, slab[k] + ti->offset)) < 0)
                return err;
            if (k == 0 && i == 0)
                owner = t->stage;
            else if (k == 0 && t->stage != owner && !warned) {
                const struct sw_ckpt_stage_state *a = &ck->stage_state[owner],
                                                 *b = &ck->stage_state[t->stage];
                warned = a->t != b->t || a->lr_mult != b->lr_mult;
                if (warned)
                    sw_log(SW_LOG_WARN, "stage %d of %d gathers saved stages %d and %d, which "
                                        "differ in AdamW step (%d, %d) or lr multiplier (%g, "
                                        "%g); using stage %d's", lay->s, lay->S, owner, t->stage,
                           a->t, b->t, a->lr_mult, b->lr_mult, owner);
            }
        }
    }
    if (st && owner >= 0)
        *st = ck->stage_state[owner];
    return 0;
}

int
sw_ckpt_list(const char *dir, bool verify, struct sw_ckpt_entry **out, int *n)
{
    int *steps = NULL, k, err;
    struct sw_ckpt_entry *e;

    *out = NULL;
    *n = 0;
    if (strlen(dir) > DIR_MAX)
        return -ENAMETOOLONG;
    if ((err = scan_steps(dir, &steps, &k)) < 0) {
        sw_log(SW_LOG_ERROR, "cannot read '%s': %s", dir, sw_strerror(err));
        return err;
    }
    if (!(e = sw_calloc((size_t)(k ? k : 1), sizeof(*e)))) {
        sw_free(steps);
        return -SW_ENOMEM;
    }
    for (int i = 0; i < k; i++) {
        char p[PATH_LEN];
        struct sw_ckpt ck;
        e[i].step = steps[i];
        pathf(p, sizeof(p), "%s/step-%08d", dir, steps[i]);
        if (!verify && !has_commit(dir, steps[i])) {
            e[i].status = -SW_ENOENT;
            snprintf(e[i].why, sizeof(e[i].why), "incomplete: no " COMMIT " marker");
            continue;
        }
        if (!verify) {
            snprintf(e[i].why, sizeof(e[i].why), "committed (not verified)");
            continue;
        }
        if ((e[i].status = sw_ckpt_open_path(&ck, p)) < 0) {
            snprintf(e[i].why, sizeof(e[i].why), "%s", sw_strerror(e[i].status));
            continue;
        }
        e[i].bytes = ck.bytes;
        e[i].S = ck.run.S;
        snprintf(e[i].why, sizeof(e[i].why), "clean");
        sw_ckpt_close(&ck);
    }
    sw_free(steps);
    *out = e;
    *n = k;
    return 0;
}

int
sw_ckpt_export(const struct sw_ckpt *ck, const char *outdir)
{
    struct sw_stage_layout lay;
    struct sw_st_desc *descs = NULL;
    struct sw_st_meta meta[] = {{"format", "pt"}, {"producer", "swarm " PACKAGE_VERSION}};
    struct sw_st_writer w;
    char path[PATH_LEN];
    void *buf = NULL;
    size_t maxlen = 0;
    int err;

    if (strlen(outdir) > DIR_MAX)
        return -ENAMETOOLONG;
    if (mkdir(outdir, 0777) < 0 && errno != EEXIST) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot create '%s': %s", outdir, sw_strerror(err));
        return err;
    }
    if ((err = sw_stage_layout_init(&lay, &ck->run.cfg, 1, 0)) < 0)
        return err;
    if (!(descs = sw_calloc((size_t)lay.ntensors, sizeof(*descs)))) {
        err = -SW_ENOMEM;
        goto out;
    }
    for (int i = 0; i < lay.ntensors; i++) {
        const struct sw_tensor_info *ti = &lay.tensors[i];
        const struct sw_ckpt_tensor *t = sw_ckpt_find(ck, ti->name);
        if (!t || t->dtype != SW_DTYPE_F32 || t->length != ti->numel * sizeof(float)) {
            sw_log(SW_LOG_ERROR, "'%s': tensor '%s' is missing or has the wrong size", ck->path,
                   ti->name);
            err = t ? -SW_ESHAPE : -SW_ENOENT;
            goto out;
        }
        descs[i] = (struct sw_st_desc){.name = ti->name, .dtype = SW_DTYPE_F32, .ndim = ti->ndim,
                                       .shape = {ti->shape[0], ti->shape[1]},
                                       .nbytes = (size_t)t->length};
        maxlen = SW_MAX(maxlen, (size_t)t->length);
    }
    if (!(buf = sw_malloc_big(maxlen))) {
        err = -SW_ENOMEM;
        goto out;
    }
    pathf(path, sizeof(path), "%s/model.safetensors", outdir);
    if ((err = sw_safetensors_writer_open(&w, path, descs, lay.ntensors, meta, 2)) < 0)
        goto out;
    for (int i = 0; i < lay.ntensors; i++) {
        const struct sw_ckpt_tensor *t = sw_ckpt_find(ck, lay.tensors[i].name);
        if ((err = sw_ckpt_read_raw(ck, t, buf)) < 0 ||
            (err = sw_safetensors_writer_put(&w, buf, (size_t)t->length)) < 0) {
            sw_safetensors_writer_abort(&w);
            goto out;
        }
    }
    if ((err = sw_safetensors_writer_commit(&w)) < 0)
        goto out;
    pathf(path, sizeof(path), "%s/config.json", outdir);
    err = sw_hfconfig_write(path, &ck->run.cfg);
out:
    sw_free_big(buf);
    sw_free(descs);
    sw_stage_layout_release(&lay);
    return err;
}

/* ---- the in-process pipeline ---- */

static bool
same_model(const struct sw_model_config *a, const struct sw_model_config *b)
{
    return sw_model_same_tensors(a, b) && a->seq_len == b->seq_len &&
           a->rope_theta == b->rope_theta && a->rms_eps == b->rms_eps;
}

int
sw_ckpt_load_sim(const struct sw_ckpt *ck, struct sw_sim *sim, struct sw_data *data)
{
    struct sw_snapshot snap;
    struct sw_ckpt_stage_state *st;
    int err;

    if (!same_model(&ck->run.cfg, &sim->cfg)) {
        sw_log(SW_LOG_ERROR, "'%s' holds another model (d_model %d, %d layers, vocab %d; this "
                             "run: %d, %d, %d)", ck->path, ck->run.cfg.d_model,
               ck->run.cfg.n_layers, ck->run.cfg.vocab_size, sim->cfg.d_model, sim->cfg.n_layers,
               sim->cfg.vocab_size);
        return -SW_ECONFIG;
    }
    if (!(st = sw_calloc((size_t)sim->S, sizeof(*st))))
        return -SW_ENOMEM;
    if ((err = sw_sim_snapshot_init(&snap, sim)) < 0) {
        sw_free(st);
        return err;
    }
    for (int s = 0; s < sim->S; s++) {
        if ((err = sw_ckpt_read_stage(ck, &sim->stages[s].lay, snap.params[s], snap.m[s],
                                      snap.v[s], &st[s])) < 0)
            goto out;
        snap.t[s] = st[s].t;
        snap.lr_mult[s] = st[s].lr_mult;
    }
    snap.step = ck->run.step;
    snap.valid = true;
    if ((err = sw_sim_snapshot_load(sim, &snap)) < 0)
        goto out;
    for (int s = 0; s < sim->S; s++) {
        sim->opts[s].last_norm = st[s].last_norm;
        sim->opts[s].last_norm_clipped = st[s].last_norm_clipped;
    }
    sim->micro = ck->run.micro;
    if (data && ck->run.have_cursor)
        sw_data_cursor_set(data, &ck->run.cursor);
    sw_log(SW_LOG_INFO, "restored step %d from '%s' (saved with %d stage(s), loaded into %d)",
           ck->run.step, ck->path, ck->run.S, sim->S);
out:
    sw_sim_snapshot_release(&snap);
    sw_free(st);
    return err;
}

#define COPY_CHUNK ((size_t)2 << 20) /* bytes per piece of the parallel copy */

/* sw_sim_snapshot_save, faster on the CPU backend: there the state is host
 * memory and one core's memcpy (about 7 GB/s here) leaves memory bandwidth
 * unused, so the 3 x S slabs are copied in 2 MiB pieces handed out to the
 * OpenMP threads (the training's own, idle between steps) as they come free:
 * a thread that another process keeps off its core then delays the copy by
 * one piece, not by half of it.  Other backends copy device to host through
 * the kernel table. */
static int
snapshot_save(struct sw_snapshot *snap, const struct sw_sim *sim)
{
    int nt = omp_get_max_threads();
    long npieces = 0;

    if (sim->k->device != SW_DEVICE_CPU || nt < 2 || snap->bytes < 2 * COPY_CHUNK)
        return sw_sim_snapshot_save(snap, sim);
    SW_ASSERT(snap->S == sim->S);
    for (int s = 0; s < sim->S; s++)
        npieces += 3 * (long)((sim->opts[s].numel * sizeof(float) + COPY_CHUNK - 1) / COPY_CHUNK);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (long i = 0; i < npieces; i++) {
        long left = i;

        for (int s = 0; s < sim->S; s++) {
            const struct sw_optim *o = &sim->opts[s];
            size_t bytes = o->numel * sizeof(float);
            long per = (long)((bytes + COPY_CHUNK - 1) / COPY_CHUNK);

            if (left >= 3 * per) {
                left -= 3 * per;
                continue;
            }
            const uint8_t *src[3] = {(const uint8_t *)sim->stages[s].params,
                                     (const uint8_t *)o->m, (const uint8_t *)o->v};
            uint8_t *dst[3] = {(uint8_t *)snap->params[s], (uint8_t *)snap->m[s],
                               (uint8_t *)snap->v[s]};
            int k = (int)(left / per);
            size_t off = (size_t)(left % per) * COPY_CHUNK;

            memcpy(dst[k] + off, src[k] + off, SW_MIN(COPY_CHUNK, bytes - off));
            break;
        }
    }
    for (int s = 0; s < sim->S; s++) {
        snap->t[s] = sim->opts[s].t;
        snap->lr_mult[s] = sim->opts[s].lr_mult;
    }
    snap->step = sim->step;
    snap->valid = true;
    return 0;
}

/* Fill buf from sim: the blocking copy. */
static int
capture(struct sw_ckpt_buf *b, const struct sw_sim *sim, const struct sw_data *data,
        const struct sw_optim_config *oc, uint64_t seed)
{
    int err;

    if ((err = snapshot_save(&b->snap, sim)) < 0)
        return err;
    for (int s = 0; s < sim->S; s++) {
        b->st[s].t = b->snap.t[s];
        b->st[s].lr_mult = b->snap.lr_mult[s];
        b->st[s].last_norm = sim->opts[s].last_norm;
        b->st[s].last_norm_clipped = sim->opts[s].last_norm_clipped;
    }
    memset(&b->run, 0, sizeof(b->run));
    b->run.step = sim->step;
    b->run.S = sim->S;
    b->run.seed = seed;
    b->run.micro = sim->micro;
    b->run.cfg = sim->cfg;
    b->run.oc = *oc;
    if (data) {
        b->run.have_cursor = true;
        sw_data_cursor_get(data, &b->run.cursor);
    }
    return 0;
}

/* sw_ckpt_save of b; *write_s: until the COMMIT is durable, *prune_s: the
 * pruning after it (each 0 when not reached). */
static int
write_buf(const char *dir, const struct sw_sim *sim, const struct sw_ckpt_buf *b, int keep,
          double *write_s, double *prune_s)
{
    struct sw_ckpt_stage_view *views = sw_calloc((size_t)sim->S, sizeof(*views));
    double t0 = sw_now_s();
    int err;

    *write_s = *prune_s = 0;
    if (!views)
        return -SW_ENOMEM;
    for (int s = 0; s < sim->S; s++)
        views[s] = (struct sw_ckpt_stage_view){.lay = &sim->stages[s].lay,
                                               .params = b->snap.params[s], .m = b->snap.m[s],
                                               .v = b->snap.v[s], .st = b->st[s]};
    err = save_commit(dir, &b->run, views, sim->S);
    *write_s = sw_now_s() - t0;
    if (err == 0) {
        t0 = sw_now_s();
        prune(dir, keep, b->run.step);
        *prune_s = sw_now_s() - t0;
    }
    sw_free(views);
    return err;
}

static int
buf_init(struct sw_ckpt_buf *b, const struct sw_sim *sim)
{
    int err;

    memset(b, 0, sizeof(*b));
    if ((err = sw_sim_snapshot_init(&b->snap, sim)) < 0)
        return err;
    if (!(b->st = sw_calloc((size_t)sim->S, sizeof(*b->st)))) {
        sw_sim_snapshot_release(&b->snap);
        return -SW_ENOMEM;
    }
    return 0;
}

static void
buf_release(struct sw_ckpt_buf *b)
{
    sw_sim_snapshot_release(&b->snap);
    sw_free(b->st);
    memset(b, 0, sizeof(*b));
}

int
sw_ckpt_save_sim(const char *dir, const struct sw_sim *sim, const struct sw_data *data,
                 const struct sw_optim_config *oc, uint64_t seed, int keep)
{
    struct sw_ckpt_buf b;
    double write_s, prune_s;
    int err;

    if ((err = buf_init(&b, sim)) < 0)
        return err;
    if ((err = capture(&b, sim, data, oc, seed)) == 0)
        err = write_buf(dir, sim, &b, keep, &write_s, &prune_s);
    buf_release(&b);
    return err;
}

/* ---- asynchronous saver ---- */

static void *
worker(void *arg)
{
    struct sw_ckpt_saver *sv = arg;

    pthread_mutex_lock(&sv->mu);
    for (;;) {
        struct sw_ckpt_buf *b = NULL;
        double dt, prune_s;
        int err;

        for (int i = 0; i < 2; i++)
            if (sv->buf[i].state == SW_CKPT_BUF_QUEUED && (!b || sv->buf[i].seq < b->seq))
                b = &sv->buf[i];
        if (!b) {
            if (sv->stop)
                break;
            pthread_cond_wait(&sv->cv, &sv->mu);
            continue;
        }
        b->state = SW_CKPT_BUF_WRITING;
        pthread_mutex_unlock(&sv->mu);
        err = write_buf(sv->dir, sv->sim, b, sv->keep, &dt, &prune_s);
        pthread_mutex_lock(&sv->mu);
        if (err < 0) {
            sv->n_failed++;
            sv->last_err = err;
            sw_log(SW_LOG_ERROR, "checkpoint of step %d not saved (training goes on): %s",
                   b->run.step, sw_strerror(err));
        } else {
            sv->n_saved++;
            sv->last_step = b->run.step;
            sv->last_write_s = dt;
            sv->sum_write_s += dt;
            sv->last_prune_s = prune_s;
            sw_log(SW_LOG_INFO, "checkpoint step %d: blocked %.2f ms, written in %.1f ms "
                                "(%.1f MB, %.0f MB/s) to '%s/step-%08d', older steps pruned in "
                                "%.1f ms", b->run.step, b->block_s * 1e3, dt * 1e3,
                   b->snap.bytes / 1e6, b->snap.bytes / 1e6 / dt, sv->dir, b->run.step,
                   prune_s * 1e3);
        }
        b->state = SW_CKPT_BUF_FREE;
        pthread_cond_broadcast(&sv->cv);
    }
    pthread_mutex_unlock(&sv->mu);
    return NULL;
}

int
sw_ckpt_saver_init(struct sw_ckpt_saver *sv, const struct sw_sim *sim, const char *dir, int keep,
                   const struct sw_optim_config *oc, uint64_t seed)
{
    int err;

    memset(sv, 0, sizeof(*sv));
    sv->keep = keep;
    sv->sim = sim;
    sv->oc = *oc;
    sv->seed = seed;
    sv->last_step = -1;
    if (!(sv->dir = sw_strdup(dir)))
        return -SW_ENOMEM;
    if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot create '%s': %s", dir, sw_strerror(err));
        goto out_free;
    }
    for (int i = 0; i < 2; i++)
        if ((err = buf_init(&sv->buf[i], sim)) < 0)
            goto out_free;
    pthread_mutex_init(&sv->mu, NULL);
    pthread_cond_init(&sv->cv, NULL);
    if ((err = -pthread_create(&sv->thread, NULL, worker, sv)) < 0) {
        pthread_mutex_destroy(&sv->mu);
        pthread_cond_destroy(&sv->cv);
        goto out_free;
    }
    return 0;
out_free:
    for (int i = 0; i < 2; i++)
        buf_release(&sv->buf[i]);
    sw_free(sv->dir);
    sv->dir = NULL;
    return err;
}

int
sw_ckpt_saver_save(struct sw_ckpt_saver *sv, const struct sw_sim *sim, const struct sw_data *data)
{
    struct sw_ckpt_buf *b = NULL;
    int writing = -1, err;
    double t0;

    SW_ASSERT(sim == sv->sim);
    pthread_mutex_lock(&sv->mu);
    for (int i = 0; i < 2; i++) {
        if (sv->buf[i].state == SW_CKPT_BUF_FREE && !b)
            b = &sv->buf[i];
        else if (sv->buf[i].state == SW_CKPT_BUF_WRITING)
            writing = sv->buf[i].run.step;
    }
    if (!b) {
        sv->n_skipped++;
        pthread_mutex_unlock(&sv->mu);
        sw_log(SW_LOG_WARN, "checkpoint of step %d skipped: two saves are still in flight "
                            "(step %d being written)", sim->step, writing);
        return -SW_EAGAIN;
    }
    pthread_mutex_unlock(&sv->mu);
    /* b is FREE: the worker does not touch it; the copy is the blocking part */
    t0 = sw_now_s();
    err = capture(b, sim, data, &sv->oc, sv->seed);
    b->block_s = sw_now_s() - t0;
    if (err < 0) {
        sw_log(SW_LOG_ERROR, "checkpoint of step %d: cannot copy the state: %s", sim->step,
               sw_strerror(err));
        return err;
    }
    pthread_mutex_lock(&sv->mu);
    sv->last_block_s = b->block_s;
    sv->max_block_s = SW_MAX(sv->max_block_s, b->block_s);
    sv->sum_block_s += b->block_s;
    b->seq = ++sv->seq;
    b->state = SW_CKPT_BUF_QUEUED;
    if (writing >= 0)
        sv->n_queued_behind++;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
    if (writing >= 0)
        sw_log(SW_LOG_WARN, "checkpoint of step %d queued behind step %d, still being written "
                            "(blocked %.2f ms)", sim->step, writing, b->block_s * 1e3);
    else
        sw_log(SW_LOG_INFO, "checkpoint of step %d: blocked %.2f ms for the copy (%.1f MB)",
               sim->step, b->block_s * 1e3, b->snap.bytes / 1e6);
    return 0;
}

int
sw_ckpt_saver_wait(struct sw_ckpt_saver *sv)
{
    int err;

    pthread_mutex_lock(&sv->mu);
    while (sv->buf[0].state != SW_CKPT_BUF_FREE || sv->buf[1].state != SW_CKPT_BUF_FREE)
        pthread_cond_wait(&sv->cv, &sv->mu);
    err = sv->last_err;
    sv->last_err = 0;
    pthread_mutex_unlock(&sv->mu);
    return err;
}

void
sw_ckpt_saver_release(struct sw_ckpt_saver *sv)
{
    if (!sv->dir)
        return;
    if (sw_ckpt_saver_wait(sv) < 0)
        sw_log(SW_LOG_DEBUG, "the last checkpoint save failed (logged above)");
    pthread_mutex_lock(&sv->mu);
    sv->stop = true;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
    pthread_join(sv->thread, NULL);
    pthread_mutex_destroy(&sv->mu);
    pthread_cond_destroy(&sv->cv);
    for (int i = 0; i < 2; i++)
        buf_release(&sv->buf[i]);
    sw_free(sv->dir);
    memset(sv, 0, sizeof(*sv));
}
