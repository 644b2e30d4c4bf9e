/*
 * wire_bench.c - signed + verified tensor messages against raw ZeroMQ.
 *
 *   bench/wire_bench [--reps N] [--mib-per-rep M] [--threads T] [--piece-kib K]
 *
 * Two processes over tcp loopback.  For 1, 8 and 64 MiB messages it times,
 * in the same run: raw ZeroMQ (one frame, zero-copy send, nothing checked),
 * the signed path (sw_transport: tree hash + Ed25519 on send; signature,
 * replay window, tree hash and NaN/Inf check on receipt), and one plain
 * BLAKE2b pass over the same bytes.  The signed path sends a tensor as
 * TENSOR pieces of --piece-kib KiB (default 2048, at most 16 MiB), each
 * signed: the sender hashes piece k+1 while ZeroMQ sends piece k and the
 * receiver hashes piece k while piece k+1 arrives.  Each
 * figure is the median of --reps repetitions of --mib-per-rep MiB (the
 * receiver acknowledges the last message of a repetition).  Then small
 * signed request round trips per second, then LAST the signed/raw
 * throughput ratio at 8 MiB.  --threads sets sw_wire_set_hash_threads in
 * both processes (default 1: on a 2-core machine the two processes and the
 * ZeroMQ I/O threads already share the cores).
 *
 * Before the last line it also prints the share of one pipeline stage's
 * compute time that authentication costs: a middle stage of one block,
 * d_model 768, B*T = 2048 (8 x 256), 2 threads, fwd+bwd of one microbatch,
 * against the authentication work that microbatch brings to the stage: its
 * activation and its gradient each received (signature check, tree hash,
 * NaN/Inf check) and sent (tree hash, signature), 6 MiB each.
 */
#include "sw.h"

#include "bench.h"

#include "identity.h"
#include "stage.h"
#include "transport.h"
#include "wire.h"

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define T_DONE 1100
#define T_QUIT 1101
#define MAX_REPS 32

static uint8_t run[32];
static int quit_flag;
static uint64_t piece = 2u << 20;
static uint64_t rx_bytes;

/* ---- receiver (child) ---- */

static void
on_tensor(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    rx_bytes += m->payload_len;
}

static void
on_done(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    if (sw_transport_reply(t, &m->route, SW_MSG_ACK, NULL, 0, NULL) < 0)
        sw_log(SW_LOG_ERROR, "reply failed");
}

static void
on_ping(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    if (sw_transport_reply(t, &m->route, SW_MSG_PONG, NULL, 0, NULL) < 0)
        sw_log(SW_LOG_ERROR, "reply failed");
}

static void
on_quit(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    on_done(t, m, arg);
    quit_flag = 1;
}

static int
receiver_main(int fd)
{
    char eps[2][256];
    struct sw_identity id;
    struct sw_transport *t;
    uv_loop_t loop;
    void *ctx, *raw;
    size_t n = sizeof(eps[0]);

    alarm(600);
    uv_loop_init(&loop);
    ctx = zmq_ctx_new();
    raw = zmq_socket(ctx, ZMQ_ROUTER);
    if (zmq_bind(raw, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(raw, ZMQ_LAST_ENDPOINT, eps[0], &n) != 0)
        return 1;
    if (sw_identity_generate(&id) < 0 ||
        sw_transport_new(&t, &loop, &id, run, &(struct sw_transport_opts){.zmq_ctx = ctx}) < 0 ||
        sw_transport_bind(t, "tcp://127.0.0.1:*", eps[1], sizeof(eps[1])) < 0 ||
        sw_transport_on(t, SW_MSG_TENSOR, on_tensor, NULL) < 0 ||
        sw_transport_on(t, T_DONE, on_done, NULL) < 0 ||
        sw_transport_on(t, SW_MSG_PING, on_ping, NULL) < 0 ||
        sw_transport_limit(t, SW_MSG_PING, 0, 0) < 0 || /* measures the request rate */
        sw_transport_on(t, T_QUIT, on_quit, NULL) < 0)
        return 1;
    if (write(fd, eps, sizeof(eps)) != (ssize_t)sizeof(eps))
        return 1;
    close(fd);
    /* raw phase: [id][data]; a 1-byte "D" is acked, "Q" ends the phase */
    for (;;) {
        zmq_msg_t idm, data;
        int more;

        zmq_msg_init(&idm);
        zmq_msg_init(&data);
        if (zmq_msg_recv(&idm, raw, 0) < 0 || zmq_msg_recv(&data, raw, 0) < 0)
            return 1;
        more = zmq_msg_more(&data);
        if (!more && zmq_msg_size(&data) == 1) {
            char c = *(char *)zmq_msg_data(&data);

            zmq_msg_send(&idm, raw, ZMQ_SNDMORE);
            zmq_send(raw, "A", 1, 0);
            zmq_msg_close(&data);
            if (c == 'Q')
                break;
            continue;
        }
        zmq_msg_close(&idm);
        zmq_msg_close(&data);
    }
    while (!quit_flag)
        uv_run(&loop, UV_RUN_ONCE);
    sw_transport_close(t, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    zmq_close(raw);
    zmq_ctx_term(ctx);
    sw_identity_release(&id);
    return 0;
}

/* ---- sender (parent) ---- */

static void
nofree(void *data, void *hint)
{
}

/* GB/s of raw ZeroMQ for count messages of size bytes. */
static double
raw_rep(void *z, const uint8_t *buf, size_t size, int count)
{
    double t0 = sw_now_s();
    char ack;

    for (int i = 0; i < count; i++) {
        zmq_msg_t m;

        zmq_msg_init_data(&m, (void *)buf, size, nofree, NULL);
        if (zmq_msg_send(&m, z, 0) < 0) {
            zmq_msg_close(&m);
            return 0;
        }
    }
    zmq_send(z, "D", 1, 0);
    if (zmq_recv(z, &ack, 1, 0) != 1)
        return 0;
    return (double)size * count / (sw_now_s() - t0) / 1e9;
}

struct waiter {
    int done, status;
};

static void
wait_cb(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct waiter *w = arg;

    w->done = 1;
    w->status = status;
}

static int
request_wait(uv_loop_t *loop, struct sw_transport *t, const char *ep, uint32_t type)
{
    struct waiter w = {0};
    int err = sw_transport_request(t, ep, type, NULL, 0, NULL, 30000, 0, wait_cb, &w);

    if (err < 0)
        return err;
    while (!w.done)
        uv_run(loop, UV_RUN_ONCE);
    return w.status;
}

/* GB/s of signed tensor messages (split in <= 16 MiB frames). */
static double
signed_rep(uv_loop_t *loop, struct sw_transport *t, const char *ep, const uint8_t *buf,
           size_t size, int count)
{
    uint8_t body[512];
    double t0 = sw_now_s();

    for (int i = 0; i < count; i++) {
        for (uint64_t off = 0; off < size; off += piece) {
            struct sw_wire_tensor d = {.name = "act", .tag = (uint64_t)i, .dtype = SW_WIRE_F32,
                                       .ndim = 2, .shape = {size / 4 / 1024, 1024}, .off = off};
            struct sw_wire_buf b;
            msgpack_packer pk;
            size_t n = (size_t)SW_MIN(piece, size - off);
            struct sw_payload pl = {.data = buf + off, .len = n, .free_cb = nofree};
            int err;

            sw_wire_buf_init(&b, body, sizeof(body));
            sw_wire_buf_packer(&pk, &b);
            if (sw_wire_tensor_pack(&pk, &d) < 0)
                return 0;
            while ((err = sw_transport_send(t, ep, SW_MSG_TENSOR, body, b.len, &pl)) == -SW_EAGAIN)
                uv_run(loop, UV_RUN_NOWAIT); /* back-pressure: let the queue drain */
            if (err < 0) {
                fprintf(stderr, "send: %s\n", sw_strerror(err));
                return 0;
            }
        }
    }
    if (request_wait(loop, t, ep, T_DONE) < 0)
        return 0;
    return (double)size * count / (sw_now_s() - t0) / 1e9;
}

/* Authentication cost as a share of one stage's compute (see the top). */
static void
auth_share(const struct sw_identity *id, int reps)
{
    const struct sw_kernels *k = &sw_kernels_cpu;
    struct sw_model_config c = {
        .vocab_size = 256, .d_model = 768, .n_layers = 3, .n_heads = 12, .n_kv_heads = 12,
        .ffn_hidden = 2048, .seq_len = 256, .rope_theta = 10000.0f, .rms_eps = 1e-5f,
    };
    int B = 8, T = 256;
    size_t bytes = (size_t)B * T * c.d_model * sizeof(float);
    struct sw_stage st;
    struct sw_wire tx, rx;
    struct sw_wire_hdr hdr;
    uint8_t env[SW_WIRE_MAX_ENVELOPE], sig[SW_WIRE_SIG_BYTES], h[SW_WIRE_HASH_BYTES];
    float *x = sw_malloc_big(bytes), *dx = sw_malloc_big(bytes);
    double ts[MAX_REPS], ta[MAX_REPS];
    size_t env_len;
    int err = 0;

    k->set_threads(2);
    if (!x || !dx || sw_stage_init(&st, k, &c, 3, 1, B, T, 1, 1) < 0 ||
        sw_wire_init(&tx, id, run, NULL) < 0 || sw_wire_init(&rx, id, run, NULL) < 0) {
        fprintf(stderr, "auth share: setup failed\n");
        exit(1);
    }
    for (size_t i = 0; i < bytes / 4; i++) {
        x[i] = (float)(i % 977) * 1e-3f - 0.4f;
        dx[i] = (float)(i % 613) * 1e-6f;
    }
    for (int r = -1; r < reps; r++) {
        double t0 = sw_now_s(), t1;

        err |= sw_stage_zero_grad(&st);
        err |= sw_stage_forward(&st, 0, SW_PART_ALL, NULL, x, NULL, x, NULL);
        err |= sw_stage_backward(&st, 0, dx, dx, 1.0f);
        t1 = sw_now_s();
        /* 2 tensors sent and 2 received per microbatch */
        for (int m = 0; m < 2; m++) {
            const float *p = m ? dx : x;
            sw_wire_payload_hash(h, p, bytes);
            err |= sw_wire_seal(&tx, SW_MSG_TENSOR, 0, NULL, 0, h, bytes, env, sizeof(env),
                                &env_len, sig);
            err |= sw_wire_open(&rx, env, env_len, sig, sizeof(sig), bytes, &hdr);
            err |= sw_wire_check_payload(&rx, &hdr, p, bytes);
            err |= !sw_wire_all_finite(SW_WIRE_F32, p, bytes);
        }
        if (r >= 0) {
            ts[r] = t1 - t0;
            ta[r] = sw_now_s() - t1;
        }
    }
    if (err)
        fprintf(stderr, "auth share: a step failed\n");
    printf("stage (1 block, d_model 768, B*T 2048, 2 threads) fwd+bwd %.1f ms; authentication of "
           "its 2 tensors in + 2 out (%zu MiB each) %.2f ms: %.2f%% of compute\n",
           bench_median(ts, reps) * 1e3, bytes >> 20, bench_median(ta, reps) * 1e3,
           100.0 * bench_median(ta, reps) / bench_median(ts, reps));
    sw_wire_release(&tx);
    sw_wire_release(&rx);
    sw_stage_release(&st);
    sw_free_big(x);
    sw_free_big(dx);
}

int
main(int argc, char **argv)
{
    static const size_t sizes[] = {1u << 20, 8u << 20, 64u << 20};
    double raw_gbs[3], sig_gbs[3], b2_gbs[3], tree_gbs[3], v[MAX_REPS];
    int reps = 5, mib = 128, threads = 1, fds[2], status;
    char eps[2][256];
    struct sw_identity id;
    struct sw_transport *t;
    uv_loop_t loop;
    uint8_t *buf, h[32];
    void *ctx, *z;
    pid_t child;

    for (int i = 1; i < argc; i++) {
        int val = i + 1 < argc ? atoi(argv[i + 1]) : 0;

        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = SW_MAX(1, SW_MIN(MAX_REPS, val));
        else if (!strcmp(argv[i], "--mib-per-rep") && i + 1 < argc)
            mib = SW_MAX(64, val);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = val;
        else if (!strcmp(argv[i], "--piece-kib") && i + 1 < argc)
            piece = (uint64_t)SW_MAX(4, SW_MIN(16384, val)) << 10;
        else {
            fprintf(stderr, "usage: %s [--reps N] [--mib-per-rep M] [--threads T] [--piece-kib K]\n",
                    argv[0]);
            return 2;
        }
        i++;
    }
    sw_wire_set_hash_threads(threads);
    memset(run, 0x33, sizeof(run));
    if (sw_identity_global_init() < 0 || pipe(fds) != 0)
        return 1;
    child = fork();
    if (child == 0) {
        close(fds[0]);
        _exit(receiver_main(fds[1]));
    }
    close(fds[1]);
    if (read(fds[0], eps, sizeof(eps)) != (ssize_t)sizeof(eps)) {
        fprintf(stderr, "receiver did not start\n");
        goto out_kill;
    }
    /* one pre-faulted buffer, reused by every message */
    buf = sw_malloc_big(sizes[2]);
    for (size_t i = 0; i < sizes[2] / 4; i++)
        ((float *)buf)[i] = (float)(i % 4093) * 1e-3f;

    printf("wire_bench: %d reps x %d MiB per size, hash threads %d, signed pieces %llu KiB, "
           "tcp loopback\n", reps, mib, threads, (unsigned long long)(piece >> 10));
    /* raw ZeroMQ */
    ctx = zmq_ctx_new();
    z = zmq_socket(ctx, ZMQ_DEALER);
    if (zmq_connect(z, eps[0]) != 0)
        goto out_kill;
    for (int s = 0; s < 3; s++) {
        int count = (int)SW_MAX((size_t)1, ((size_t)mib << 20) / sizes[s]);

        raw_rep(z, buf, sizes[s], 1); /* warm-up */
        for (int r = 0; r < reps; r++)
            v[r] = raw_rep(z, buf, sizes[s], count);
        raw_gbs[s] = bench_median(v, reps);
    }
    {
        char ack;

        zmq_send(z, "Q", 1, 0);
        if (zmq_recv(z, &ack, 1, 0) != 1)
            goto out_kill;
    }
    zmq_close(z);

    /* BLAKE2b: one plain pass, and the tree hash the wire uses */
    for (int s = 0; s < 3; s++) {
        for (int r = 0; r < reps; r++) {
            double t0 = sw_now_s();

            crypto_generichash(h, 32, buf, sizes[s], NULL, 0);
            v[r] = (double)sizes[s] / (sw_now_s() - t0) / 1e9;
        }
        b2_gbs[s] = bench_median(v, reps);
        for (int r = 0; r < reps; r++) {
            double t0 = sw_now_s();

            sw_wire_payload_hash(h, buf, sizes[s]);
            v[r] = (double)sizes[s] / (sw_now_s() - t0) / 1e9;
        }
        tree_gbs[s] = bench_median(v, reps);
    }

    /* signed path */
    uv_loop_init(&loop);
    if (sw_identity_generate(&id) < 0 ||
        sw_transport_new(&t, &loop, &id, run, &(struct sw_transport_opts){.zmq_ctx = ctx}) < 0)
        goto out_kill;
    for (int s = 0; s < 3; s++) {
        int count = (int)SW_MAX((size_t)1, ((size_t)mib << 20) / sizes[s]);

        signed_rep(&loop, t, eps[1], buf, sizes[s], 1); /* warm-up */
        for (int r = 0; r < reps; r++)
            v[r] = signed_rep(&loop, t, eps[1], buf, sizes[s], count);
        sig_gbs[s] = bench_median(v, reps);
    }
    for (int s = 0; s < 3; s++)
        printf("%3zu MiB  raw zmq %6.2f GB/s   signed %6.2f GB/s (%.2fx)   blake2b pass %5.2f GB/s"
               "   tree hash %5.2f GB/s\n",
               sizes[s] >> 20, raw_gbs[s], sig_gbs[s], sig_gbs[s] / raw_gbs[s], b2_gbs[s],
               tree_gbs[s]);

    /* small signed requests */
    for (int r = 0; r < reps; r++) {
        int n = 0;
        double t0 = sw_now_s();

        while (sw_now_s() - t0 < 0.3 && request_wait(&loop, t, eps[1], SW_MSG_PING) == 0)
            n++;
        v[r] = n / (sw_now_s() - t0);
    }
    printf("small signed request round trips: %.0f /s\n", bench_median(v, reps));
    auth_share(&id, reps);
    printf("drops at sender: %llu\n", (unsigned long long)(sw_transport_wire(t)->stats.drops[0] +
                                                           sw_transport_wire(t)->stats.drops[1]));
    if (request_wait(&loop, t, eps[1], T_QUIT) < 0)
        fprintf(stderr, "quit not acknowledged\n");
    sw_transport_close(t, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    zmq_ctx_term(ctx);
    waitpid(child, &status, 0);
    sw_free_big(buf);
    sw_identity_release(&id);
    printf("signed/raw throughput at 8 MiB: %.2f\n", sig_gbs[1] / raw_gbs[1]);
    return 0;
out_kill:
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return 1;
}
