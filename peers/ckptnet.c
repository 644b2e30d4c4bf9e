/*
 * ckptnet.c - checkpoints over the network (see ckptnet.h).
 */
#include "sw.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ckptnet.h"
#include "status.h"
#include "wire.h"

#define EP SW_PROTO_EP_MAX

static const char *const suffix[3] = {"", ".adam_m", ".adam_v"};

/* ---- body helpers ---- */

static bool
open_map(struct sw_transport *t, const struct sw_transport_msg *m, msgpack_unpacked *u,
         const char *const *keys)
{
    if (!sw_proto_open(m->hdr.body, m->hdr.body_len, u, keys)) {
        sw_wire_count_drop(sw_transport_wire(t), SW_WIRE_DROP_MALFORMED);
        SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped malformed message of type %u",
                           m->hdr.type);
        return false;
    }
    return true;
}

/* "name.adam_m" -> base "name", which 1 */
static int
split_name(const char *name, char *base, size_t cap, int *which)
{
    size_t len = strlen(name);

    *which = 0;
    for (int k = 1; k < 3; k++) {
        size_t sl = strlen(suffix[k]);
        if (len > sl && !strcmp(name + len - sl, suffix[k])) {
            *which = k;
            len -= sl;
            break;
        }
    }
    if (len >= cap)
        return -SW_EINVAL;
    memcpy(base, name, len);
    base[len] = '\0';
    return 0;
}

/* ---- assignment ---- */

void
sw_ckptnet_assign(const struct sw_stage_layout *lay, int k, int *owner)
{
    int n = lay->ntensors;
    int *order = sw_malloc((size_t)SW_MAX(n, 1) * sizeof(int));
    uint64_t load[SW_PROTO_MAX_REPLICAS] = {0};

    SW_ASSERT(k >= 1 && k <= SW_PROTO_MAX_REPLICAS);
    if (!order) {
        /* no memory for the sort: by index, still the same on every replica */
        for (int i = 0; i < n; i++)
            owner[i] = i % k;
        return;
    }
    for (int i = 0; i < n; i++)
        order[i] = i;
    /* insertion sort: descending numel, ties by index (stable) */
    for (int i = 1; i < n; i++) {
        int x = order[i], j = i - 1;
        while (j >= 0 && lay->tensors[order[j]].numel < lay->tensors[x].numel) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = x;
    }
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int r = 1; r < k; r++)
            if (load[r] < load[best])
                best = r;
        owner[order[i]] = best;
        load[best] += lay->tensors[order[i]].numel;
    }
    sw_free(order);
}

/* ---- saver and server ---- */

static void on_info_get(struct sw_transport *t, const struct sw_transport_msg *m, void *arg);

static void
held_close(struct sw_ckptnet_held *h)
{
    if (h->on)
        sw_ckpt_close(&h->ck);
    h->on = false;
}
static void on_get(struct sw_transport *t, const struct sw_transport_msg *m, void *arg);

int
sw_ckptnet_init(struct sw_ckptnet *c, uv_loop_t *loop, struct sw_transport *tr,
                const struct sw_model_config *cfg, const struct sw_optim_config *oc,
                uint64_t seed, int S, int M, int steps, int every, int keep, bool keeper,
                const char *dir, const uint64_t *stepp)
{
    int err;

    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->tr = tr;
    c->cfg = *cfg;
    c->oc = *oc;
    c->seed = seed;
    c->S = S;
    c->M = M;
    c->steps = steps;
    c->every = every;
    c->keep = keep;
    c->keeper = keeper;
    c->stepp = stepp;
    c->stage = -1;
    c->ck_stale = true;
    snprintf(c->dir, sizeof(c->dir), "%s", dir ? dir : "");
    if ((err = sw_transport_on(tr, SW_MSG_CKPT_INFO_GET, on_info_get, c)) < 0 ||
        (err = sw_transport_on(tr, SW_MSG_CKPT_GET, on_get, c)) < 0)
        return err;
    return 0;
}

void
sw_ckptnet_release(struct sw_ckptnet *c)
{
    if (c->have_ck)
        sw_ckpt_close(&c->ck);
    for (int i = 0; i < 2; i++)
        held_close(&c->held[i]);
    if (c->have_wck)
        sw_ckpt_close(&c->wck);
    if (c->have_lay)
        sw_stage_layout_release(&c->lay);
    sw_free(c->subt);
    sw_free(c->own);
    sw_free(c->ck_own);
    for (int i = 0; i < 2; i++)
        sw_free(c->held[i].own);
    sw_free_big(c->buf);
    sw_free(c->cbuf);
    memset(c, 0, sizeof(*c));
}

bool
sw_ckptnet_due(const struct sw_ckptnet *c, uint64_t step)
{
    return !c->keeper && c->dir[0] && c->every > 0 && step > 0 &&
           (step % (uint64_t)c->every == 0 || step == (uint64_t)c->steps);
}

float *
sw_ckptnet_save_begin(struct sw_ckptnet *c, const struct sw_stage_layout *lay, int stage,
                      uint64_t step, int *err)
{
    size_t nt = (size_t)lay->ntensors;

    *err = 0;
    if (c->writing) {
        c->nskipped++;
        sw_log(SW_LOG_WARN, "local checkpoint of step %llu skipped: the save of step %llu is "
               "still being written", (unsigned long long)step, (unsigned long long)c->buf_step);
        *err = -SW_EAGAIN;
        return NULL;
    }
    if (c->stage != stage) {
        /* first save (a node keeps its stage for life) */
        if (c->have_lay)
            sw_stage_layout_release(&c->lay);
        c->have_lay = false;
        sw_free(c->subt);
        sw_free(c->own);
        sw_free(c->ck_own);
        sw_free_big(c->buf);
        c->subt = NULL;
        c->own = c->ck_own = NULL;
        c->buf = NULL;
        for (int i = 0; i < 2; i++) {
            held_close(&c->held[i]);
            sw_free(c->held[i].own);
            c->held[i].own = NULL;
        }
        if ((*err = sw_stage_layout_init(&c->lay, &c->cfg, c->S, stage)) < 0)
            return NULL;
        c->have_lay = true;
        c->subt = sw_calloc(SW_MAX(nt, 1), sizeof(*c->subt));
        c->own = sw_calloc(SW_MAX(nt, 1), sizeof(bool));
        c->ck_own = sw_calloc(SW_MAX(nt, 1), sizeof(bool));
        c->held[0].own = sw_calloc(SW_MAX(nt, 1), sizeof(bool));
        c->held[1].own = sw_calloc(SW_MAX(nt, 1), sizeof(bool));
        c->buf = sw_malloc_big(3 * lay->numel * sizeof(float));
        if (!c->subt || !c->own || !c->ck_own || !c->held[0].own || !c->held[1].own || !c->buf) {
            *err = -SW_ENOMEM;
            return NULL;
        }
        c->stage = stage;
    }
    c->buf_step = 0; /* being overwritten */
    return c->buf;
}

static void
save_work(uv_work_t *w)
{
    struct sw_ckptnet *c = w->data;
    size_t numel = c->lay.numel;
    struct sw_stage_layout *empty = sw_calloc((size_t)c->S, sizeof(*empty));
    struct sw_ckpt_stage_view *v = sw_calloc((size_t)c->S, sizeof(*v));
    double t0 = sw_now_s();

    c->werr = 0;
    c->have_wck = false;
    if (!empty || !v) {
        c->werr = -SW_ENOMEM;
        goto out;
    }
    if (c->sub.ntensors == 0)
        goto out; /* this node writes nothing of this step (more nodes than tensors) */
    /*
     * The checkpoint format lists every stage of the run: the other stages
     * get an empty layout (a data file with no tensor), this one the
     * tensors this node writes.
     */
    for (int s = 0; s < c->S; s++) {
        if (s == c->stage) {
            v[s].lay = &c->sub;
        } else {
            empty[s].S = c->S;
            empty[s].s = s;
            sw_model_partition(&c->cfg, c->S, s, &empty[s].l0, &empty[s].l1);
            v[s].lay = &empty[s];
        }
        v[s].params = c->buf;
        v[s].m = c->buf + numel;
        v[s].v = c->buf + 2 * numel;
        v[s].st = c->buf_st;
    }
    if ((c->werr = sw_ckpt_save(c->dir, &c->run, v, c->S, c->keep)) < 0)
        goto out;
    /* read back: the committed step is what CKPT_GET serves */
    if ((c->werr = sw_ckpt_open(&c->wck, c->dir, c->run.step)) == 0)
        c->have_wck = true;
out:
    c->write_s = sw_now_s() - t0;
    sw_free(empty);
    sw_free(v);
}

/* When a request last named step (CKPT_INFO_GET, CKPT_GET); 0: not lately. */
static uint64_t
asked_at(const struct sw_ckptnet *c, uint64_t step)
{
    for (int i = 0; i < SW_CKPTNET_ASKED; i++)
        if (c->asked[i].step == step)
            return c->asked[i].ms;
    return 0;
}

static bool
asked_lately(const struct sw_ckptnet *c, uint64_t step, uint64_t now)
{
    uint64_t at = asked_at(c, step);
    return at && now - at < SW_CKPTNET_PIN_MS;
}

/* A request named step: remember when (the oldest entry gives way). */
static void
note_asked(struct sw_ckptnet *c, uint64_t step)
{
    int j = 0;

    for (int i = 0; i < SW_CKPTNET_ASKED; i++) {
        if (c->asked[i].step == step) {
            j = i;
            break;
        }
        if (c->asked[i].ms < c->asked[j].ms)
            j = i;
    }
    c->asked[j].step = step;
    c->asked[j].ms = sw_now_ms();
}

/*
 * A new step is committed.  The newest before it stays open as held[0] (a
 * pull that began on it reads on); the one held[0] held moves to held[1]
 * when a request named it within SW_CKPTNET_PIN_MS (and later than the step
 * held[1] holds), so a pull slower than the saves (a big stage over a slow
 * link) is not cut off; held[1] is closed once nobody asked for it that
 * long.  At most two steps more than the newest stay open.
 */
static void
keep_held(struct sw_ckptnet *c)
{
    struct sw_ckptnet_held *prev = &c->held[0], *pin = &c->held[1];
    uint64_t now = sw_now_ms();

    if (!c->have_ck)
        return;
    if (prev->on && asked_lately(c, prev->step, now) &&
        (!pin->on || asked_at(c, prev->step) >= asked_at(c, pin->step))) {
        bool *own = pin->own;
        held_close(pin);
        *pin = *prev;
        prev->own = own;
        prev->on = false;
    } else {
        held_close(prev);
    }
    if (pin->on && !asked_lately(c, pin->step, now))
        held_close(pin);
    prev->ck = c->ck;
    prev->on = true;
    prev->step = c->ck_step;
    prev->st = c->ck_st;
    memcpy(prev->own, c->ck_own, (size_t)c->lay.ntensors * sizeof(bool));
    memset(&c->ck, 0, sizeof(c->ck));
    c->have_ck = false;
}

static struct sw_ckptnet_held *
held_find(struct sw_ckptnet *c, uint64_t step)
{
    for (int i = 0; i < 2; i++)
        if (c->held[i].on && c->held[i].step == step)
            return &c->held[i];
    return NULL;
}

static void
save_done(uv_work_t *w, int status)
{
    struct sw_ckptnet *c = w->data;
    int nt = c->lay.ntensors, mine = c->sub.ntensors;
    uint64_t bytes = 0;
    char f[160];

    c->writing = false;
    for (int i = 0; i < mine; i++)
        bytes += 3 * c->sub.tensors[i].numel * sizeof(float);
    if (status < 0 && !c->werr)
        c->werr = status;
    if (c->werr < 0) {
        c->nfailed++;
        sw_log(SW_LOG_ERROR, "local checkpoint of step %d into '%s' failed: %s; training goes "
               "on, the memory copy serves the step", c->run.step, c->dir, sw_strerror(c->werr));
        if (c->have_wck)
            sw_ckpt_close(&c->wck);
        c->have_wck = false;
        return;
    }
    keep_held(c);
    c->have_ck = c->have_wck;
    if (c->have_wck)
        c->ck = c->wck;
    c->have_wck = false;
    memset(&c->wck, 0, sizeof(c->wck));
    c->ck_step = (uint64_t)c->run.step;
    c->ck_st = c->buf_st;
    memcpy(c->ck_own, c->own, (size_t)nt * sizeof(bool));
    c->nsaved++;
    sw_log(SW_LOG_INFO, "local checkpoint step %d: stage %d, %d of %d tensors (%llu bytes), "
           "blocked %.1f ms, written in %.0f ms into '%s'", c->run.step, c->stage, mine, nt,
           (unsigned long long)bytes, c->block_s * 1000, c->write_s * 1000, c->dir);
    snprintf(f, sizeof(f), "\"step\":%d,\"stage\":%d,\"tensors\":%d,\"of\":%d,\"bytes\":%llu",
             c->run.step, c->stage, mine, nt, (unsigned long long)bytes);
    sw_log_out("ckpt_local", f, "ckpt-local step=%d stage=%d tensors=%d/%d bytes=%llu",
               c->run.step, c->stage, mine, nt, (unsigned long long)bytes);
}

int
sw_ckptnet_save_queue(struct sw_ckptnet *c, const struct sw_ckpt_stage_state *st, int k, int idx,
                      double block_s)
{
    int nt = c->lay.ntensors, *owner = sw_malloc((size_t)SW_MAX(nt, 1) * sizeof(int)), mine = 0;
    uint64_t step = *c->stepp;
    int err;

    if (!owner)
        return -SW_ENOMEM;
    if (k < 1 || k > SW_PROTO_MAX_REPLICAS || idx < 0 || idx >= k)
        k = 1, idx = 0;
    sw_ckptnet_assign(&c->lay, k, owner);
    for (int i = 0; i < nt; i++) {
        c->own[i] = owner[i] == idx;
        if (c->own[i])
            c->subt[mine++] = c->lay.tensors[i];
    }
    sw_free(owner);
    c->sub = c->lay;
    c->sub.tensors = c->subt;
    c->sub.ntensors = mine;
    c->buf_step = step;
    c->buf_st = *st;
    memset(&c->run, 0, sizeof(c->run));
    c->run.step = (int)step;
    c->run.S = c->S;
    c->run.seed = c->seed;
    c->run.micro = step * (uint64_t)c->M;
    c->run.cfg = c->cfg;
    c->run.oc = c->oc;
    c->block_s = block_s;
    c->work.data = c;
    if ((err = uv_queue_work(c->loop, &c->work, save_work, save_done)) < 0) {
        sw_log(SW_LOG_ERROR, "local checkpoint of step %llu: cannot queue the write: %s",
               (unsigned long long)step, uv_strerror(err));
        return -SW_EIO;
    }
    c->writing = true;
    return 0;
}

void
sw_ckptnet_committed(struct sw_ckptnet *c)
{
    c->ck_stale = true;
}

/* Keeper: open step (0: the newest) of dir unless it is the open one. */
static int
keeper_open(struct sw_ckptnet *c, uint64_t step)
{
    int err;

    if (c->have_ck && !(step == 0 && c->ck_stale) && (step == 0 || step == c->ck_step))
        return 0;
    if (c->have_ck)
        sw_ckpt_close(&c->ck);
    c->have_ck = false;
    if ((err = sw_ckpt_open(&c->ck, c->dir, step ? (int)step : -1)) < 0)
        return err;
    c->have_ck = true;
    c->ck_step = (uint64_t)c->ck.run.step;
    if (step == 0)
        c->ck_stale = false;
    return 0;
}

uint64_t
sw_ckptnet_newest(struct sw_ckptnet *c)
{
    struct sw_ckpt_entry *e = NULL;
    int cnt = 0, best = 0;
    struct stat sb;

    /* a folder not made yet (a new keeper's) holds none: no error to log */
    if (stat(c->dir, &sb) < 0 || sw_ckpt_list(c->dir, false, &e, &cnt) < 0)
        return 0;
    for (int i = 0; i < cnt; i++)
        if (e[i].status == 0 && e[i].step > best)
            best = e[i].step;
    sw_free(e);
    return (uint64_t)best;
}

static void
on_info_get(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"step", "stage", NULL};
    static struct sw_body b;
    struct sw_ckptnet *c = arg;
    msgpack_unpacked u;
    uint64_t step, stage, now_step = c->stepp ? *c->stepp : 0;
    struct sw_stage_layout rl;
    bool have_rl = false, mem = false;
    uint8_t have[1024];
    size_t nbits = 0;
    struct sw_ckpt_stage_state st = {0};
    struct sw_ckptnet_held *h = NULL;
    int err = 0, saved_S = c->S;

    if (m->route.rid == 0)
        return;
    if (!open_map(t, m, &u, keys))
        return;
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_u64(&u.data, "stage", &stage) < 0 || stage >= (uint64_t)c->S) {
        msgpack_unpacked_destroy(&u);
        sw_wire_count_drop(sw_transport_wire(t), SW_WIRE_DROP_MALFORMED);
        return;
    }
    msgpack_unpacked_destroy(&u);
    memset(have, 0, sizeof(have));
    if (c->keeper) {
        if ((err = keeper_open(c, step)) < 0) {
            err = err == -SW_ENOENT || err == -SW_EHASH || err == -SW_EFORMAT ? -SW_ENOENT : err;
        } else if (!sw_model_same_tensors(&c->ck.run.cfg, &c->cfg)) {
            err = -SW_ECONFIG;
        } else if ((err = sw_stage_layout_init(&rl, &c->cfg, c->S, (int)stage)) == 0) {
            have_rl = true;
            step = c->ck_step;
            saved_S = c->ck.run.S;
            nbits = (size_t)rl.ntensors;
            for (int i = 0; i < rl.ntensors; i++) {
                bool all = true;
                for (int k = 0; k < 3 && all; k++) {
                    char nm[SW_NAME_MAX + 8];
                    snprintf(nm, sizeof(nm), "%s%s", rl.tensors[i].name, suffix[k]);
                    all = sw_ckpt_find(&c->ck, nm) != NULL;
                }
                if (all)
                    have[i / 8] |= (uint8_t)(1u << (i % 8));
            }
            if (rl.ntensors > 0) {
                const struct sw_ckpt_tensor *ft = sw_ckpt_find(&c->ck, rl.tensors[0].name);
                if (ft && ft->stage >= 0 && ft->stage < c->ck.run.S)
                    st = c->ck.stage_state[ft->stage];
            }
        }
    } else if (!c->dir[0] || c->every <= 0) {
        err = -SW_ENOTSUP;
    } else if (step == 0) {
        err = -SW_EINVAL;
    } else if (c->stage < 0 || (c->writing && c->buf_step == step)) {
        err = now_step < step || c->writing ? -SW_EAGAIN : -SW_ENOENT;
    } else if (stage != (uint64_t)c->stage) {
        err = -SW_EINVAL;
    } else if (c->ck_step == step || c->buf_step == step || (h = held_find(c, step))) {
        const bool *own = c->ck_step == step ? c->ck_own : h ? h->own : NULL;
        nbits = (size_t)c->lay.ntensors;
        if (own)
            for (int i = 0; i < c->lay.ntensors; i++)
                if (own[i])
                    have[i / 8] |= (uint8_t)(1u << (i % 8));
        mem = c->buf_step == step;
        st = mem ? c->buf_st : h ? h->st : c->ck_st;
    } else {
        err = now_step < step ? -SW_EAGAIN : -SW_ENOENT;
    }
    /* a step served, or the next save: kept open a while after newer
     * commits (a stranger naming far steps cannot push the keeper's out) */
    if (!c->keeper && (err == 0 || (err == -SW_EAGAIN && step <= now_step + (uint64_t)c->every)))
        note_asked(c, step);
    if (!c->keeper && err == -SW_ENOENT)
        step = c->have_ck ? c->ck_step : 0; /* the newest it holds: aim there */
    if (nbits > 8 * sizeof(have))
        err = -SW_ETOOBIG, nbits = 0;
    sw_body_init(&b);
    msgpack_pack_map(&b.pk, 9);
    sw_proto_pack_key(&b.pk, "err");
    msgpack_pack_int64(&b.pk, err);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, step);
    sw_proto_pack_key(&b.pk, "S");
    msgpack_pack_uint32(&b.pk, (uint32_t)saved_S);
    sw_proto_pack_key(&b.pk, "t");
    msgpack_pack_uint64(&b.pk, (uint64_t)SW_MAX(st.t, 0));
    sw_proto_pack_key(&b.pk, "lr_mult");
    msgpack_pack_double(&b.pk, st.lr_mult);
    sw_proto_pack_key(&b.pk, "norm");
    msgpack_pack_double(&b.pk, isfinite(st.last_norm) ? st.last_norm : 0.0);
    sw_proto_pack_key(&b.pk, "normc");
    msgpack_pack_double(&b.pk, isfinite(st.last_norm_clipped) ? st.last_norm_clipped : 0.0);
    sw_proto_pack_key(&b.pk, "have");
    sw_proto_pack_bin(&b.pk, have, err ? 0 : (nbits + 7) / 8);
    sw_proto_pack_key(&b.pk, "mem");
    if (mem && !err)
        msgpack_pack_true(&b.pk);
    else
        msgpack_pack_false(&b.pk);
    if (have_rl)
        sw_stage_layout_release(&rl);
    if (!b.b.overflow && sw_transport_reply(t, &m->route, SW_MSG_CKPT_INFO, b.b.data, b.b.len,
                                            NULL) < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 1000, "cannot answer a checkpoint request");
}

/* The whole tensor `name` of step into the cache (c->cbuf, clen, chash). */
static int
cache_fill(struct sw_ckptnet *c, uint64_t step, const char *name)
{
    const struct sw_ckpt_tensor *ct = NULL;
    const struct sw_ckpt *ck = &c->ck;
    struct sw_ckptnet_held *h;
    char base[SW_NAME_MAX + 8];
    int which, err;

    if (c->cname[0] && c->cstep == step && !strcmp(c->cname, name))
        return 0;
    c->cname[0] = '\0';
    if (c->keeper) {
        if ((err = keeper_open(c, step)) < 0)
            return err == -SW_ENOENT || err == -SW_EHASH || err == -SW_EFORMAT ? -SW_ENOENT : err;
    }
    if (c->have_ck && c->ck_step == step)
        ct = sw_ckpt_find(&c->ck, name);
    else if (!c->keeper && (h = held_find(c, step)) && (ct = sw_ckpt_find(&h->ck, name)))
        ck = &h->ck;
    if (ct) {
        if (ct->length > c->ccap) {
            uint8_t *nb = sw_malloc((size_t)ct->length);
            if (!nb)
                return -SW_ENOMEM;
            sw_free(c->cbuf);
            c->cbuf = nb;
            c->ccap = (size_t)ct->length;
        }
        if ((err = sw_ckpt_read_raw(ck, ct, c->cbuf)) < 0)
            return err;
        c->clen = (size_t)ct->length;
        memcpy(c->chash, ct->hash, 32);
        c->cmem = false;
    } else if (!c->keeper && c->have_lay && c->buf_step == step) {
        const struct sw_tensor_info *ti;
        if (split_name(name, base, sizeof(base), &which) < 0 ||
            !(ti = sw_stage_layout_find_name(&c->lay, base)))
            return -SW_ENOENT;
        c->clen = ti->numel * sizeof(float);
        if (c->clen > c->ccap) {
            uint8_t *nb = sw_malloc(c->clen);
            if (!nb)
                return -SW_ENOMEM;
            sw_free(c->cbuf);
            c->cbuf = nb;
            c->ccap = c->clen;
        }
        memcpy(c->cbuf, c->buf + (size_t)which * c->lay.numel + ti->offset, c->clen);
        crypto_generichash(c->chash, 32, c->cbuf, c->clen, NULL, 0);
        c->cmem = true;
    } else if (!c->keeper && c->writing && c->buf_step == 0) {
        return -SW_EAGAIN;
    } else {
        return -SW_ENOENT;
    }
    snprintf(c->cname, sizeof(c->cname), "%s", name);
    c->cstep = step;
    return 0;
}

static void
on_get(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"step", "name", "off", "n", NULL};
    static struct sw_body b;
    struct sw_ckptnet *c = arg;
    msgpack_unpacked u;
    char name[SW_NAME_MAX + 8];
    uint64_t step, off, cnt;
    struct sw_payload p = {NULL, 0, NULL, NULL, NULL};
    int err = 0;

    if (m->route.rid == 0)
        return;
    if (!open_map(t, m, &u, keys))
        return;
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_str(&u.data, "name", name, sizeof(name)) < 0 ||
        sw_proto_get_u64(&u.data, "off", &off) < 0 || sw_proto_get_u64(&u.data, "n", &cnt) < 0 ||
        cnt == 0 || cnt > SW_CKPTNET_PIECE || step == 0) {
        msgpack_unpacked_destroy(&u);
        sw_wire_count_drop(sw_transport_wire(t), SW_WIRE_DROP_MALFORMED);
        return;
    }
    msgpack_unpacked_destroy(&u);
    if (!c->keeper && !c->dir[0])
        err = -SW_ENOTSUP;
    else
        err = cache_fill(c, step, name);
    if (!c->keeper && !err)
        note_asked(c, step);
    if (!err && (off > c->clen || cnt > c->clen - off))
        err = -SW_EINVAL;
    sw_body_init(&b);
    msgpack_pack_map(&b.pk, 7);
    sw_proto_pack_key(&b.pk, "err");
    msgpack_pack_int64(&b.pk, err);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, step);
    sw_proto_pack_key(&b.pk, "name");
    sw_proto_pack_str(&b.pk, name);
    sw_proto_pack_key(&b.pk, "off");
    msgpack_pack_uint64(&b.pk, off);
    sw_proto_pack_key(&b.pk, "n");
    msgpack_pack_uint64(&b.pk, err ? 0 : cnt);
    sw_proto_pack_key(&b.pk, "length");
    msgpack_pack_uint64(&b.pk, err ? 0 : c->clen);
    sw_proto_pack_key(&b.pk, "hash");
    sw_proto_pack_bin(&b.pk, c->chash, err ? 0 : 32);
    if (!err) {
        p.data = c->cbuf + off;
        p.len = (size_t)cnt;
        c->served_bytes += cnt;
    }
    if (!b.b.overflow && sw_transport_reply(t, &m->route, SW_MSG_CKPT, b.b.data, b.b.len,
                                            err ? NULL : &p) < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 1000, "cannot answer a checkpoint request");
}

/* ---- the puller ---- */

int
sw_ckptnet_pull_init(struct sw_ckptnet_pull *p, struct sw_transport *tr,
                     const struct sw_stage_layout *lay, int stage, float *buf, uint64_t want)
{
    size_t nt = (size_t)SW_MAX(lay->ntensors, 1);

    memset(p, 0, sizeof(*p));
    p->tr = tr;
    p->lay = lay;
    p->stage = stage;
    p->buf = buf;
    p->want = want;
    p->t0_ms = sw_now_ms();
    if (!(p->from = sw_calloc(nt, sizeof(int))))
        return -SW_ENOMEM;
    for (int i = 0; i < SW_CKPTNET_MAX_SRC; i++) {
        p->src[i].p = p;
        if (!(p->src[i].have = sw_calloc(nt, 1)))
            return -SW_ENOMEM;
    }
    return 0;
}

/*
 * Requests in flight.  The transport cannot take a request back, so each
 * one carries a ticket (its callback's arg) naming the pull, the source slot
 * and a serial; the pull keeps its tickets on a list.  A source the pull
 * stops waiting for (gone, abandoned) only forgets the serial, and
 * releasing the pull unhooks the tickets from it: the answer that comes
 * later finds no pull or another serial and is dropped, and the callback
 * frees its ticket.  So nothing ever waits on a request to a dead node.
 */
struct sw_ckptnet_req {
    struct sw_ckptnet_pull *p;    /* NULL once the pull was released */
    int src;
    uint64_t serial;
    struct sw_ckptnet_req *prev, *next;
};

static void
req_unlink(struct sw_ckptnet_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (r->p)
        r->p->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* The request's callback ran: the source it was for, or NULL when the pull
 * no longer waits for it (then the answer is dropped). */
static struct sw_ckptnet_src *
req_done(struct sw_ckptnet_req *r)
{
    struct sw_ckptnet_pull *p = r->p;
    struct sw_ckptnet_src *s = NULL;

    if (p) {
        req_unlink(r);
        if (p->src[r->src].busy && p->src[r->src].rq == r->serial) {
            s = &p->src[r->src];
            s->busy = false;
            s->rq = 0;
        }
    }
    sw_free(r);
    return s;
}

static int
req_send(struct sw_ckptnet_pull *p, struct sw_ckptnet_src *s, uint32_t type,
         const struct sw_body *b, uint64_t timeout_ms, sw_transport_response_cb *cb)
{
    struct sw_ckptnet_req *r = sw_calloc(1, sizeof(*r));

    if (!r)
        return -SW_ENOMEM;
    r->p = p;
    r->src = (int)(s - p->src);
    r->serial = ++p->serial;
    if (sw_transport_request(p->tr, s->ep, type, b->b.data, b->b.len, NULL, timeout_ms, 0, cb,
                             r) < 0) {
        sw_free(r);
        return -SW_EIO;
    }
    r->next = p->reqs;
    if (p->reqs)
        p->reqs->prev = r;
    p->reqs = r;
    s->busy = true;
    s->rq = r->serial;
    return 0;
}

/* Stop waiting for s's request (its answer, if one comes, is dropped). */
static void
src_forget(struct sw_ckptnet_src *s)
{
    s->busy = false;
    s->rq = 0;
}

void
sw_ckptnet_pull_release(struct sw_ckptnet_pull *p)
{
    for (struct sw_ckptnet_req *r = p->reqs, *nx; r; r = nx) {
        nx = r->next;
        r->p = NULL;
        r->prev = r->next = NULL;
    }
    sw_free(p->from);
    for (int i = 0; i < SW_CKPTNET_MAX_SRC; i++)
        sw_free(p->src[i].have);
    memset(p, 0, sizeof(*p));
}

void
sw_ckptnet_pull_abandon(struct sw_ckptnet_pull *p)
{
    p->gen++; /* late answers carry an old gen: dropped */
    for (int i = 0; i < SW_CKPTNET_MAX_SRC; i++)
        src_forget(&p->src[i]);
    p->phase = SW_CKPTNET_PULL_FAILED;
    p->status = -SW_ECANCELED;
}

bool
sw_ckptnet_pull_busy(const struct sw_ckptnet_pull *p)
{
    for (int i = 0; i < SW_CKPTNET_MAX_SRC; i++)
        if (p->src[i].busy)
            return true;
    return false;
}

static void
on_info(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"err", "step", "S", "t", "lr_mult", "norm", "normc",
                                       "have", "mem", NULL};
    struct sw_ckptnet_src *s = req_done(arg);
    struct sw_ckptnet_pull *p = s ? s->p : NULL;
    msgpack_unpacked u;
    uint64_t step, S, tt;
    double lrm, norm, normc;
    const uint8_t *have;
    size_t hl = 0;
    bool mem;
    int64_t err;

    if (status == -SW_ECANCELED || !p || s->gen != p->gen)
        return;
    if (status < 0) {
        sw_log(SW_LOG_WARN, "checkpoint info from '%s': %s", s->ep, sw_strerror(status));
        s->state = SW_CKPTNET_SRC_FAILED;
        if (status == -SW_ETIMEDOUT) {
            /* the next rounds do not wait for it once another answered */
            snprintf(p->slow[p->nslow++ % SW_CKPTNET_MAX_SRC], EP, "%s", s->ep);
        }
        return;
    }
    if (!open_map(t, m, &u, keys))
        goto bad;
    if (sw_proto_get_err(&u.data, &err) < 0 || sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_u64(&u.data, "S", &S) < 0 || sw_proto_get_u64(&u.data, "t", &tt) < 0 ||
        sw_proto_get_f64(&u.data, "lr_mult", &lrm) < 0 ||
        sw_proto_get_f64(&u.data, "norm", &norm) < 0 ||
        sw_proto_get_f64(&u.data, "normc", &normc) < 0 ||
        sw_proto_get_bin(&u.data, "have", &have, &hl) < 0 ||
        sw_proto_get_bool(&u.data, "mem", &mem) < 0) {
        msgpack_unpacked_destroy(&u);
        goto bad;
    }
    if (err == -SW_EAGAIN) {
        s->state = SW_CKPTNET_SRC_AGAIN;
    } else if (err == -SW_ENOTSUP) {
        s->state = SW_CKPTNET_SRC_NOTSUP;
    } else if (err == -SW_ECONFIG) {
        sw_log(SW_LOG_ERROR, "checkpoint at '%s' holds another model than the manifest's", s->ep);
        s->state = SW_CKPTNET_SRC_FAILED;
        p->status = -SW_ECONFIG;
    } else if (err != 0) {
        s->state = SW_CKPTNET_SRC_NONE;
        if (err == -SW_ENOENT && step > p->newest)
            p->newest = step; /* a node's answer: the newest step it holds */
    } else if (hl != ((size_t)p->lay->ntensors + 7) / 8 || step == 0 ||
               (p->want && step != p->want) || (p->step && step != p->step) || S == 0 ||
               S > 1024 || !isfinite(lrm)) {
        msgpack_unpacked_destroy(&u);
        goto bad;
    } else {
        s->state = SW_CKPTNET_SRC_OK;
        s->mem = mem;
        for (int i = 0; i < p->lay->ntensors; i++)
            s->have[i] = (have[i / 8] >> (i % 8)) & 1;
        if (!p->step)
            p->step = step; /* the first answer fixes "newest" */
        p->st.t = (int)tt;
        p->st.lr_mult = (float)lrm;
        p->st.last_norm = (float)norm;
        p->st.last_norm_clipped = (float)normc;
        p->saved_S = (int)S;
    }
    msgpack_unpacked_destroy(&u);
    return;
bad:
    SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "checkpoint info from '%s' malformed", s->ep);
    s->state = SW_CKPTNET_SRC_FAILED;
}

static void
info_round(struct sw_ckptnet_pull *p, const char (*eps)[EP], int neps)
{
    static struct sw_body b;

    p->gen++;
    p->rounds++;
    p->round_ms = sw_now_ms();
    p->nsrc = 0;
    for (int i = 0; i < neps && p->nsrc < SW_CKPTNET_MAX_SRC; i++) {
        struct sw_ckptnet_src *s = &p->src[p->nsrc++];
        snprintf(s->ep, EP, "%s", eps[i]);
        s->state = SW_CKPTNET_SRC_ASKING;
        src_forget(s);
        s->mem = false;
        s->ntake = 0;
        s->gen = p->gen;
        memset(s->have, 0, (size_t)SW_MAX(p->lay->ntensors, 1));
        sw_body_init(&b);
        msgpack_pack_map(&b.pk, 2);
        sw_proto_pack_key(&b.pk, "step");
        msgpack_pack_uint64(&b.pk, p->step ? p->step : p->want);
        sw_proto_pack_key(&b.pk, "stage");
        msgpack_pack_uint32(&b.pk, (uint32_t)p->stage);
        if (req_send(p, s, SW_MSG_CKPT_INFO_GET, &b, SW_CKPTNET_INFO_MS, on_info) < 0)
            s->state = SW_CKPTNET_SRC_FAILED;
    }
}

/* Sources for every tensor from ti on (written ones first); false when one has none. */
static bool
choose(struct sw_ckptnet_pull *p, int from_ti)
{
    for (int i = from_ti; i < p->lay->ntensors; i++) {
        int best = -1;
        for (int k = 0; k < p->nsrc && best < 0; k++)
            if (p->src[k].state == SW_CKPTNET_SRC_OK && p->src[k].have[i])
                best = k;
        for (int k = 0; k < p->nsrc && best < 0; k++)
            if (p->src[k].state == SW_CKPTNET_SRC_OK && p->src[k].mem)
                best = k;
        if (best < 0)
            return false;
        p->from[i] = best;
    }
    return true;
}

static void piece_request(struct sw_ckptnet_pull *p);

static void
src_failed(struct sw_ckptnet_pull *p, struct sw_ckptnet_src *s, const char *why)
{
    sw_log(SW_LOG_WARN, "checkpoint step %llu: '%s' failed (%s); taking its tensors from "
           "another node", (unsigned long long)p->step, s->ep, why);
    s->state = SW_CKPTNET_SRC_FAILED;
    p->off = 0;
    p->have_hash = false;
    if (++p->fails > 32) {
        sw_log(SW_LOG_WARN, "checkpoint step %llu: too many failed sources; giving up",
               (unsigned long long)p->step);
        p->phase = SW_CKPTNET_PULL_FAILED;
        p->status = -SW_ENOENT;
        return;
    }
    if (!choose(p, p->ti)) {
        /* nobody else has them: ask the sources again (memory copies) */
        p->phase = SW_CKPTNET_PULL_INFO;
        p->retry_ms = sw_now_ms() + 200;
        p->gen++;
    }
}

static void
on_piece(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"err", "step", "name", "off", "n", "length", "hash", NULL};
    struct sw_ckptnet_src *s = req_done(arg);
    struct sw_ckptnet_pull *p = s ? s->p : NULL;
    const struct sw_tensor_info *ti;
    msgpack_unpacked u;
    uint64_t step, off, cnt, length;
    const uint8_t *hash;
    size_t hl = 0;
    char name[SW_NAME_MAX + 8], want[SW_NAME_MAX + 8];
    int64_t err;
    uint8_t *dst;

    if (status == -SW_ECANCELED || !p || s->gen != p->gen || p->phase != SW_CKPTNET_PULL_PIECES)
        return;
    if (status < 0) {
        src_failed(p, s, sw_strerror(status));
        return;
    }
    ti = &p->lay->tensors[p->ti];
    snprintf(want, sizeof(want), "%s%s", ti->name, suffix[p->which]);
    if (!open_map(t, m, &u, keys)) {
        src_failed(p, s, "malformed answer");
        return;
    }
    if (sw_proto_get_err(&u.data, &err) < 0 || sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_str(&u.data, "name", name, sizeof(name)) < 0 ||
        sw_proto_get_u64(&u.data, "off", &off) < 0 || sw_proto_get_u64(&u.data, "n", &cnt) < 0 ||
        sw_proto_get_u64(&u.data, "length", &length) < 0 ||
        sw_proto_get_bin(&u.data, "hash", &hash, &hl) < 0) {
        msgpack_unpacked_destroy(&u);
        src_failed(p, s, "malformed answer");
        return;
    }
    if (err == -SW_EAGAIN) {
        msgpack_unpacked_destroy(&u);
        p->retry_ms = sw_now_ms() + 100;
        return;
    }
    if (err != 0) {
        msgpack_unpacked_destroy(&u);
        src_failed(p, s, sw_strerror((int)err));
        return;
    }
    if (step != p->step || strcmp(name, want) || off != p->off || hl != 32 ||
        length != ti->numel * sizeof(float) || cnt > length - off || cnt == 0 ||
        m->payload_len != cnt || (p->have_hash && memcmp(hash, p->hash, 32))) {
        msgpack_unpacked_destroy(&u);
        src_failed(p, s, "bad piece");
        return;
    }
    if (!p->have_hash) {
        memcpy(p->hash, hash, 32);
        p->have_hash = true;
    }
    msgpack_unpacked_destroy(&u);
    dst = (uint8_t *)(p->buf + (size_t)p->which * p->lay->numel + ti->offset);
    memcpy(dst + off, m->payload, cnt);
    p->off += cnt;
    p->bytes += cnt;
    if (p->off == length) {
        uint8_t h[32];
        crypto_generichash(h, 32, dst, length, NULL, 0);
        if (memcmp(h, p->hash, 32)) {
            src_failed(p, s, "tensor checksum mismatch");
            return;
        }
        p->off = 0;
        p->have_hash = false;
        if (p->which == 0) {
            if (s->have[p->ti])
                p->n_disk++;
            else
                p->n_mem++;
        }
        if (++p->which == 3) {
            p->which = 0;
            if (++p->ti == p->lay->ntensors) {
                p->phase = SW_CKPTNET_PULL_DONE;
                return;
            }
        }
    }
    piece_request(p);
}

static void
piece_request(struct sw_ckptnet_pull *p)
{
    static struct sw_body b;
    const struct sw_tensor_info *ti = &p->lay->tensors[p->ti];
    struct sw_ckptnet_src *s = &p->src[p->from[p->ti]];
    char name[SW_NAME_MAX + 8];
    size_t len = ti->numel * sizeof(float);

    snprintf(name, sizeof(name), "%s%s", ti->name, suffix[p->which]);
    sw_body_init(&b);
    msgpack_pack_map(&b.pk, 4);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, p->step);
    sw_proto_pack_key(&b.pk, "name");
    sw_proto_pack_str(&b.pk, name);
    sw_proto_pack_key(&b.pk, "off");
    msgpack_pack_uint64(&b.pk, p->off);
    sw_proto_pack_key(&b.pk, "n");
    msgpack_pack_uint64(&b.pk, SW_MIN((size_t)SW_CKPTNET_PIECE, len - p->off));
    s->gen = p->gen;
    if (req_send(p, s, SW_MSG_CKPT_GET, &b, SW_CKPTNET_RPC_MS, on_piece) < 0)
        p->retry_ms = sw_now_ms() + 200;
}

static bool
ep_listed(const char *ep, const char (*eps)[EP], int neps)
{
    for (int i = 0; i < neps; i++)
        if (!strcmp(ep, eps[i]))
            return true;
    return false;
}

/* Every tensor from ti on has a source that wrote it (the best a round can
 * give: no need to wait for the others). */
static bool
all_written(const struct sw_ckptnet_pull *p)
{
    for (int i = p->ti; i < p->lay->ntensors; i++) {
        bool w = false;
        for (int k = 0; k < p->nsrc && !w; k++)
            w = p->src[k].state == SW_CKPTNET_SRC_OK && p->src[k].have[i];
        if (!w)
            return false;
    }
    return true;
}

static bool
slow(const struct sw_ckptnet_pull *p, const char *ep)
{
    for (int i = 0; i < SW_MIN(p->nslow, SW_CKPTNET_MAX_SRC); i++)
        if (!strcmp(p->slow[i], ep))
            return true;
    return false;
}

int
sw_ckptnet_pull_tick(struct sw_ckptnet_pull *p, const char (*eps)[EP], int neps)
{
    uint64_t now = sw_now_ms();
    bool asking = false, again = false, notsup = false, none = false, ok = false, round_done;
    bool asking_fresh = false;

    if (p->phase == SW_CKPTNET_PULL_DONE)
        return 1;
    if (p->phase == SW_CKPTNET_PULL_FAILED)
        return p->status;
    /* a source whose node is no longer listed (its record says leaving, or
     * it was declared dead) is not waited for: its tensors come from
     * another, or from the next round */
    for (int k = 0; k < p->nsrc; k++) {
        struct sw_ckptnet_src *s = &p->src[k];
        if (!s->busy || ep_listed(s->ep, eps, neps))
            continue;
        src_forget(s);
        if (p->phase == SW_CKPTNET_PULL_PIECES && s->gen == p->gen) {
            p->gen++; /* its piece is asked again from another source */
            src_failed(p, s, "its node is gone");
        } else {
            sw_log(SW_LOG_INFO, "checkpoint step %llu: '%s' is gone; not waiting for its "
                   "answer", (unsigned long long)(p->step ? p->step : p->want), s->ep);
            s->state = SW_CKPTNET_SRC_FAILED;
        }
        if (p->phase == SW_CKPTNET_PULL_FAILED)
            return p->status;
    }
    if (now < p->retry_ms)
        return 0;
    if (p->phase == SW_CKPTNET_PULL_PIECES) {
        if (!sw_ckptnet_pull_busy(p))
            piece_request(p);
        return 0;
    }
    /* INFO: start a round, or judge the one that finished */
    for (int k = 0; k < p->nsrc; k++) {
        const struct sw_ckptnet_src *s = &p->src[k];
        if (s->gen != p->gen)
            continue;
        asking |= s->busy;
        asking_fresh |= s->busy && !slow(p, s->ep);
        again |= s->state == SW_CKPTNET_SRC_AGAIN;
        notsup |= s->state == SW_CKPTNET_SRC_NOTSUP;
        none |= s->state == SW_CKPTNET_SRC_NONE;
        ok |= s->state == SW_CKPTNET_SRC_OK;
    }
    /* the round goes on without the sources still silent once those that
     * answered cover every tensor from their files, or from memory after
     * SW_CKPTNET_INFO_WAIT_MS: a node that stopped answering costs that
     * much, not a timeout */
    if (asking && !asking_fresh && (ok || again) && p->nsrc > 0 && p->src[0].gen == p->gen) {
        /* only sources that timed out before are silent: a node that is
         * gone but still listed (its death not yet declared) costs one
         * timeout per pull, not one per round */
        for (int k = 0; k < p->nsrc; k++)
            if (p->src[k].busy) {
                src_forget(&p->src[k]);
                p->src[k].state = SW_CKPTNET_SRC_FAILED;
            }
        asking = false;
    }
    if (asking && ok && p->nsrc > 0 && p->src[0].gen == p->gen &&
        (all_written(p) || now - p->round_ms >= SW_CKPTNET_INFO_WAIT_MS) && choose(p, p->ti)) {
        for (int k = 0; k < p->nsrc; k++)
            if (p->src[k].busy) {
                src_forget(&p->src[k]);
                p->src[k].state = SW_CKPTNET_SRC_FAILED;
            }
        asking = false;
    }
    if (asking)
        return 0;
    if (p->status == -SW_ECONFIG) {
        p->phase = SW_CKPTNET_PULL_FAILED;
        return p->status;
    }
    round_done = p->nsrc > 0 && p->src[0].gen == p->gen;
    if (round_done && (ok || again || notsup || none)) {
        if (ok && choose(p, p->ti)) {
            p->phase = SW_CKPTNET_PULL_PIECES;
            p->gen++;
            piece_request(p);
            return 0;
        }
        if (!again && !ok && notsup && !none) {
            p->phase = SW_CKPTNET_PULL_FAILED;
            p->status = -SW_ENOTSUP;
            return p->status;
        }
        if (!again) {
            p->phase = SW_CKPTNET_PULL_FAILED;
            p->status = -SW_ENOENT;
            return p->status;
        }
        /* not there yet, or still being written */
        p->nsrc = 0;
        p->retry_ms = now + 100;
        return 0;
    }
    if (round_done) {
        /* every source failed: the next round after a while */
        p->nsrc = 0;
        p->retry_ms = now + 500;
        return 0;
    }
    if (neps == 0) {
        p->retry_ms = now + 200;
        return 0;
    }
    info_round(p, eps, neps);
    return 0;
}

/* ---- the keeper's record ---- */

void
sw_ckptnet_keeper_key(uint8_t key[32], const uint8_t run[32])
{
    crypto_generichash_state h;

    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, run, 32);
    crypto_generichash_update(&h, (const uint8_t *)"keeper", 6);
    crypto_generichash_final(&h, key, 32);
}

static void
on_pub(void *arg, int status, unsigned n_stored, const struct sw_dht_lookup_info *info)
{
    (void)arg;
    (void)info;
    if (status < 0 && status != -SW_ECANCELED)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "cannot publish the keeper record: %s",
                           sw_strerror(status));
    else if (status == 0)
        sw_log(SW_LOG_DEBUG, "keeper record stored on %u nodes", n_stored);
}

int
sw_ckptnet_publish(struct sw_dhtnode *dht, const uint8_t run[32], const uint8_t *sk,
                   const uint8_t *cert, size_t cert_len, const char *ep, uint64_t step,
                   uint64_t seq)
{
    static uint8_t val[512 + SW_STATUS_CERT_MAX];
    struct sw_wire_buf b;
    msgpack_packer pk;
    struct sw_dht_record r;

    sw_wire_buf_init(&b, val, sizeof(val));
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, 3 + (cert_len > 0));
    sw_proto_pack_key(&pk, "ver");
    msgpack_pack_uint32(&pk, 1);
    sw_proto_pack_key(&pk, "ep");
    sw_proto_pack_str(&pk, ep);
    sw_proto_pack_key(&pk, "step");
    msgpack_pack_uint64(&pk, step);
    if (cert_len > 0) {
        sw_proto_pack_key(&pk, "cert");
        sw_proto_pack_bin(&pk, cert, cert_len);
    }
    if (b.overflow)
        return -SW_ETOOBIG;
    memset(&r, 0, sizeof(r));
    sw_ckptnet_keeper_key(r.key, run);
    r.seq = seq;
    r.ttl_s = SW_CKPTNET_REC_TTL_S;
    r.val = val;
    r.val_len = b.len;
    sw_dht_record_sign(&r, sk);
    return sw_dhtnode_put(dht, &r, on_pub, NULL);
}

static void
on_found(void *arg, int status, const struct sw_dht_record *recs, size_t n,
         const struct sw_dht_lookup_info *info)
{
    static const char *const keys[] = {"ver", "ep", "step", "cert", NULL};
    struct sw_ckptnet_finder *f = arg;
    bool found = false;

    (void)info;
    if (status == -SW_ECANCELED)
        return;
    f->busy = false;
    f->lookups++;
    f->at_ms = sw_now_ms();
    for (size_t i = 0; i < n; i++) {
        msgpack_unpacked u;
        uint64_t ver, step;
        const uint8_t *cert = NULL;
        size_t clen = 0;
        char ep[EP];
        msgpack_unpacked_init(&u);
        if (sw_wire_unpack(recs[i].val, recs[i].val_len, &u) == 0 &&
            sw_proto_only(&u.data, keys) && sw_proto_get_u64(&u.data, "ver", &ver) == 0 &&
            ver == 1 && sw_proto_get_str(&u.data, "ep", ep, sizeof(ep)) == 0 &&
            sw_proto_get_u64(&u.data, "step", &step) == 0 &&
            (!sw_proto_get(&u.data, "cert") ||
             (sw_proto_get_bin(&u.data, "cert", &cert, &clen) == 0 && clen > 0 &&
              clen <= SW_STATUS_CERT_MAX)) &&
            (!found || step > f->step)) {
            if (f->admit && !f->admit(f->admit_arg, recs[i].pub, cert, cert ? clen : 0)) {
                f->unadmitted++;
                SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "passed over a keeper record of %s at "
                                   "%s: no valid certificate", sw_proto_who((char[13]){0},
                                   recs[i].pub), ep);
                msgpack_unpacked_destroy(&u);
                continue;
            }
            found = true;
            f->step = step;
            snprintf(f->ep, sizeof(f->ep), "%s", ep);
        }
        msgpack_unpacked_destroy(&u);
    }
    if (found && !f->found)
        sw_log(SW_LOG_INFO, "found a keeper at %s (newest checkpoint: step %llu)", f->ep,
               (unsigned long long)f->step);
    f->found = found;
}

void
sw_ckptnet_find(struct sw_ckptnet_finder *f, struct sw_dhtnode *dht, const uint8_t run[32],
                uint64_t min_ms)
{
    uint8_t key[32];

    if (!dht || f->busy || (f->lookups && sw_now_ms() - f->at_ms < min_ms))
        return;
    sw_ckptnet_keeper_key(key, run);
    if (sw_dhtnode_get(dht, key, on_found, f) == 0)
        f->busy = true;
}
