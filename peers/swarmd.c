/*
 * swarmd - a node of a swarm run.
 *
 *   swarmd bootstrap --run FILE --listen tcp://HOST:PORT [--owner HEX]
 *   swarmd join --peer tcp://HOST:PORT [--stage auto|N] [--listen ...] [--advertise ...]
 *               [--data PATH]
 *               [--device auto|cpu|cuda] [--threads N] [--owner HEX] [--metrics HOST:PORT]
 *               [--from-checkpoint DIR|keeper] [--ckpt-dir DIR]
 *   swarmd keeper --peer tcp://HOST:PORT --dir DIR [--every N] [--keep K]
 *   (every command: [--key DIR] [--cert FILE], the node's key and its certificate)
 *
 * Options come from one table per command (src/cfg.h), which prints --help;
 * swarmd(1) lists the same.  Each table's first entry is --config FILE, which
 * reads the others from an INI file (peers/cfgfile.h, swarmd.conf(5)) before
 * the command line, which wins.  Exit codes: enum sw_node_exit (node.h).
 */
#include "sw.h"

#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "cfgfile.h"
#include "node.h"

#define T struct sw_node_opts
static const struct sw_cfg_entry boot_tab[] = {
    SW_CFG_STR(T, "config", config, "", "read the options from this INI file first; the command line overrides it (swarmd.conf(5))"),
    SW_CFG_STR(T, "run", run, "", "the signed manifest (FILE.sig beside it)"),
    SW_CFG_STR(T, "listen", listen, "tcp://127.0.0.1:7400", "endpoint nodes and swarmctl reach (the lobby)"),
    SW_CFG_STR(T, "owner", owner, "", "refuse a manifest not signed by this key (64 hex digits)"),
    SW_CFG_STR(T, "key", key, "", "directory of this node's key (default: a fresh key in memory)"),
    SW_CFG_STR(T, "cert", cert, "", "this node's membership certificate (swarmctl admit); an owner-mode run admits no other key but the owner's"),
    SW_CFG_STR(T, "metrics", metrics, "", "serve Prometheus metrics on HOST:PORT (PORT 0: a free one, logged)"),
    SW_CFG_BOOL(T, "relay", relay, 1, "relay messages between outbound-only nodes of the run (swarmd(1), Relays)"),
    SW_CFG_INT(T, "dead-ms", dead_ms, 3000, 500, 600000, "a node silent this long is dead (record refresh every third of it)"),
    SW_CFG_STR(T, "log-level", log_level, "info", "debug, info, warn or error"),
    SW_CFG_STR(T, "log-format", log_format, "text", "text (for people) or json (one object a line, for scripts; swarmd(1), OUTPUT)"),
};
static const struct sw_cfg_entry join_tab[] = {
    SW_CFG_STR(T, "config", config, "", "read the options from this INI file first; the command line overrides it (swarmd.conf(5))"),
    SW_CFG_STR(T, "peer", peer, "", "endpoint of the bootstrap or of any node of the run"),
    SW_CFG_STR(T, "stage", stage, "auto", "auto or a stage number"),
    SW_CFG_STR(T, "listen", listen, "tcp://127.0.0.1:*", "this node's lobby endpoint (* picks a port)"),
    SW_CFG_STR(T, "advertise", advertise, "", "the run endpoint other nodes dial, tcp://ADDR:PORT (a forwarded port, another public address; the run transport binds PORT of --listen's host; * : the port it gets)"),
    SW_CFG_STR(T, "data", data, "", "training data for stage 0 (default: the manifest's [data] path)"),
    SW_CFG_STR(T, "device", device, "auto", "auto, cpu or cuda"),
    SW_CFG_INT(T, "threads", threads, 0, 0, 1024, "CPU threads (0: all cores)"),
    SW_CFG_STR(T, "owner", owner, "", "refuse a run whose manifest is not signed by this key (64 hex digits)"),
    SW_CFG_STR(T, "key", key, "", "directory of this node's key (default: a fresh key in memory)"),
    SW_CFG_STR(T, "cert", cert, "", "this node's membership certificate (swarmctl admit); an owner-mode run admits no other key but the owner's"),
    SW_CFG_STR(T, "metrics", metrics, "", "serve Prometheus metrics on HOST:PORT (PORT 0: a free one, logged)"),
    SW_CFG_BOOL(T, "exit-at-end", exit_at_end, 1, "exit once the manifest's steps are done"),
    SW_CFG_BOOL(T, "relay", relay, 1, "relay messages between outbound-only nodes of the run when this node is reachable (swarmd(1), Relays)"),
    SW_CFG_INT(T, "linger-ms", linger_ms, 1500, 0, 600000, "wait after the last step before exiting"),
    SW_CFG_INT(T, "dead-ms", dead_ms, 3000, 500, 600000, "a node silent this long is dead: no new record (refreshed every third of it) or no answer to two pings"),
    SW_CFG_INT(T, "ban-ms", ban_ms, 60000, 0, 86400000, "how long a peer that sent a bad message is ignored"),
    SW_CFG_STR(T, "from-checkpoint", from_ckpt, "", "start the stage from the newest clean checkpoint in DIR, or from the run's keeper over the network ('keeper', or a DIR that does not exist here), when no live replica has it"),
    SW_CFG_STR(T, "ckpt-dir", ckpt_dir, "", "save this node's share of its stage here every [checkpoint] every steps, for the keeper (default: no local saves)"),
    SW_CFG_STR(T, "log-level", log_level, "info", "debug, info, warn or error"),
    SW_CFG_STR(T, "log-format", log_format, "text", "text (for people) or json (one object a line, for scripts; swarmd(1), OUTPUT)"),
};
static const struct sw_cfg_entry keeper_tab[] = {
    SW_CFG_STR(T, "config", config, "", "read the options from this INI file first; the command line overrides it (swarmd.conf(5))"),
    SW_CFG_STR(T, "peer", peer, "", "endpoint of the bootstrap or of any node of the run"),
    SW_CFG_STR(T, "dir", ckpt_dir, "", "checkpoint folder (default: the manifest's [checkpoint] dir)"),
    SW_CFG_INT(T, "every", ckpt_every, 0, 0, 100000000, "steps between checkpoints (0: the manifest's [checkpoint] every)"),
    SW_CFG_INT(T, "keep", ckpt_keep, 0, 0, 1000, "checkpoints kept (0: the manifest's [checkpoint] keep)"),
    SW_CFG_STR(T, "listen", listen, "tcp://127.0.0.1:*", "this keeper's lobby endpoint (* picks a port)"),
    SW_CFG_STR(T, "owner", owner, "", "refuse a run whose manifest is not signed by this key (64 hex digits)"),
    SW_CFG_STR(T, "key", key, "", "directory of this node's key (default: a fresh key in memory)"),
    SW_CFG_STR(T, "cert", cert, "", "this node's membership certificate (swarmctl admit); an owner-mode run admits no other key but the owner's"),
    SW_CFG_BOOL(T, "exit-at-end", exit_at_end, 1, "exit once the run's last step is saved"),
    SW_CFG_INT(T, "dead-ms", dead_ms, 3000, 500, 600000, "a node silent this long is dead"),
    SW_CFG_STR(T, "metrics", metrics, "", "serve Prometheus metrics on HOST:PORT (PORT 0: a free one, logged)"),
    SW_CFG_STR(T, "log-level", log_level, "info", "debug, info, warn or error"),
    SW_CFG_STR(T, "log-format", log_format, "text", "text (for people) or json (one object a line, for scripts; swarmd(1), OUTPUT)"),
};
#undef T

static const char *prog = "swarmd";

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: swarmd bootstrap --run FILE --listen tcp://HOST:PORT [options]\n"
            "       swarmd join --peer tcp://HOST:PORT [--stage auto|N] [options]\n"
            "       swarmd keeper --peer tcp://HOST:PORT --dir DIR [--every N] [options]\n"
            "       swarmd COMMAND --config FILE [options]\n"
            "       swarmd --help | --version\n\n"
            "A node of a swarm run: 'bootstrap' seeds the run (serves the signed manifest and\n"
            "seeds the run's DHT, trains nothing); 'join' trains one pipeline stage;\n"
            "'keeper' saves checkpoints of the whole run, pulled from its nodes.\n"
            "'swarmd COMMAND --help' lists a command's options; see swarmd(1).\n\n"
            "exit status: 0 done or left on a signal, 1 runtime failure, 2 usage, 3 manifest\n"
            "refused, 4 peer unreachable, 5 a stage is lost and nothing can rebuild it,\n"
            "6 not admitted (no valid certificate for this key, or revoked)\n");
}

/* --config FILE: the defaults, the file's keys over them (those before any
 * section and in [CMD]; the other commands' sections are passed over), then
 * the command line again over both (it parsed once already). */
static int
read_config(const char *cmd, const struct sw_cfg_entry *tab, size_t n, int argc, char **argv,
            struct sw_node_opts *o)
{
    static const char *const cmds[] = {"bootstrap", "join", "keeper", NULL};
    char path[sizeof(o->config)], why[4600];
    int err;

    SW_ASSERT(n > 0 && !strcmp(tab[0].name, "config")); /* not a key of the file */
    snprintf(path, sizeof(path), "%s", o->config);
    sw_cfg_defaults(tab, n, o);
    err = sw_cfgfile_load(tab + 1, n - 1, o, path, cmd, cmds, why, sizeof(why));
    if (err < 0) {
        fprintf(stderr, "%s: %s\n", prog, err == -SW_ECONFIG ? why : sw_strerror(err));
        return SW_EXIT_USAGE;
    }
    if (sw_cfg_getopt(tab, n, o, argc, argv, 1, prog) < 0)
        return SW_EXIT_USAGE;
    return 0;
}

static int
run_cmd(const char *cmd, const struct sw_cfg_entry *tab, size_t n, int argc, char **argv)
{
    struct sw_node_opts o;
    int err;

    memset(&o, 0, sizeof(o));
    sw_cfg_defaults(tab, n, &o);
    snprintf(o.mode, sizeof(o.mode), "%s", cmd);
    snprintf(o.device, sizeof(o.device), "cpu");
    snprintf(o.stage, sizeof(o.stage), "auto");
    sw_cfg_defaults(tab, n, &o);
    err = sw_cfg_getopt(tab, n, &o, argc, argv, 1, prog);
    if (err == -SW_ECANCELED) {
        printf("usage: swarmd %s [options]\n\n", cmd);
        sw_cfg_help(tab, n, stdout);
        return 0;
    }
    if (err < 0)
        return SW_EXIT_USAGE;
    if (err < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[err]);
        return SW_EXIT_USAGE;
    }
    if (o.config[0] && (err = read_config(cmd, tab, n, argc, argv, &o)) != 0)
        return err;
    if (sw_log_parse_level(o.log_level) < 0) {
        fprintf(stderr, "%s: --log-level: want debug, info, warn or error\n", prog);
        return SW_EXIT_USAGE;
    }
    if (sw_log_parse_format(o.log_format) < 0) {
        fprintf(stderr, "%s: --log-format: want text or json\n", prog);
        return SW_EXIT_USAGE;
    }
    if (!strcmp(cmd, "bootstrap") && !o.run[0]) {
        fprintf(stderr, "%s: bootstrap needs --run FILE\n", prog);
        return SW_EXIT_USAGE;
    }
    if (o.advertise[0] && (sw_transport_endpoint_split(o.advertise, NULL, 0, NULL) < 0 ||
                           strncmp(o.listen, "tcp://", 6) != 0)) {
        fprintf(stderr, "%s: --advertise: want tcp://A.B.C.D:PORT or tcp://[IPV6]:PORT (a "
                "numeric address, PORT 1-65535 or *) and a tcp:// --listen, got '%s'\n", prog,
                o.advertise);
        return SW_EXIT_USAGE;
    }
    if ((!strcmp(cmd, "join") || !strcmp(cmd, "keeper")) && !o.peer[0]) {
        fprintf(stderr, "%s: %s needs --peer tcp://HOST:PORT\n", prog, cmd);
        return SW_EXIT_USAGE;
    }
    return sw_node_main(&o);
}

int
main(int argc, char **argv)
{
    sw_log_set_prog(prog);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? SW_EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("swarmd (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "bootstrap"))
        return run_cmd("bootstrap", boot_tab, SW_ARRAY_SIZE(boot_tab), argc - 1, argv + 1);
    if (!strcmp(argv[1], "join"))
        return run_cmd("join", join_tab, SW_ARRAY_SIZE(join_tab), argc - 1, argv + 1);
    if (!strcmp(argv[1], "keeper"))
        return run_cmd("keeper", keeper_tab, SW_ARRAY_SIZE(keeper_tab), argc - 1, argv + 1);
    fprintf(stderr, "%s: unknown command '%s' (bootstrap, join or keeper; see --help)\n", prog,
            argv[1]);
    return SW_EXIT_USAGE;
}
