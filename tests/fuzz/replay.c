/*
 * replay.c - runs a libFuzzer target without libFuzzer: feeds every file
 * named on the command line (or every file in a directory) to
 * LLVMFuzzerTestOneInput once.  `make check` uses it to replay the committed
 * corpora with gcc; scripts/fuzz.sh builds the same targets with clang
 * -fsanitize=fuzzer for real fuzzing.  Prints TAP: one line per input set.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;

    if (!f) {
        printf("# cannot open '%s'\n", path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
        printf("# cannot read '%s'\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

static int
run_path(const char *path, int *count)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    char sub[4096];
    int err = 0;

    if (stat(path, &st) != 0) {
        printf("# cannot stat '%s'\n", path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return run_file(path);
    }
    d = opendir(path);
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        if (run_path(sub, count) < 0)
            err = -1;
    }
    closedir(d);
    return err;
}

int
main(int argc, char **argv)
{
    int count = 0, err = 0;

    printf("1..1\n");
    for (int i = 1; i < argc; i++)
        if (run_path(argv[i], &count) < 0)
            err = -1;
    /* a crash, hang or sanitizer report would have stopped us before here */
    printf("%s 1 - replayed %d inputs without a crash\n", err == 0 && count > 0 ? "ok" : "not ok",
           count);
    return err == 0 && count > 0 ? 0 : 1;
}
