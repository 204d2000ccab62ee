/* wire_data.h - where the recorded backend answers are (tests/data/wire) and reading one, for the
 * unit tests that replay them (test_wire_formats.c, test_chatresp.c, test_h1resp.c). Test-only and
 * header-only (static inline: the unit rule builds one .c per test binary); include after cmocka.h
 * and lv_buf.h. */
#ifndef LV_TEST_WIRE_DATA_H
#define LV_TEST_WIRE_DATA_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline int wire_dir_has_data(const char *d)
{
    char probe[1100];
    snprintf(probe, sizeof probe, "%.1000s/openai-stream.txt", d);
    return access(probe, R_OK) == 0;
}

/* tests/data/wire: $LV_TEST_DATA/wire, ./tests/data/wire, or next to the binary (BUILD/tests/).
 * Fails the test when none has the recordings. */
static inline const char *wire_dir(void)
{
    static char dir[1024];
    if (dir[0])
        return dir;
    const char *env = getenv("LV_TEST_DATA");
    if (env) {
        snprintf(dir, sizeof dir, "%.1000s/wire", env);
        if (wire_dir_has_data(dir))
            return dir;
    }
    snprintf(dir, sizeof dir, "tests/data/wire");
    if (wire_dir_has_data(dir))
        return dir;
    char exe[900];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(dir, sizeof dir, "%.900s/../../tests/data/wire", exe);
        if (wire_dir_has_data(dir))
            return dir;
    }
    dir[0] = '\0';
    fail_msg("tests/data/wire not found (run from the repository root or set LV_TEST_DATA)");
    return NULL;
}

/* The whole file name (in wire_dir()) into raw, initialised here with a 1 MiB cap and
 * NUL-terminated; fails the test when it cannot be read. */
static inline void wire_read(const char *name, lv_buf_t *raw)
{
    char path[1200];
    snprintf(path, sizeof path, "%.1000s/%.150s", wire_dir(), name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    lv_buf_init(raw, 1 << 20);
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        assert_int_equal(lv_buf_append(raw, tmp, n), 0);
    fclose(f);
    assert_non_null(raw->data);
}

/* Past the '#' comment lines a recording starts with: its head. */
static inline const char *wire_skip_comments(const char *s)
{
    while (*s == '#') {
        const char *nl = strchr(s, '\n');
        assert_non_null(nl);
        s = nl + 1;
    }
    return s;
}

#endif
