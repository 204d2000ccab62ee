/* fuzz_redisurl.c - libFuzzer driver for the Redis URL parser (`--redis`, LIVEVLM_REDIS: text an
 * operator writes, often pasted). The input is the URL. Checks: only 0 or LV_EINVAL; a refusal has
 * a sentence and leaves the result zeroed; what parsed obeys the caps and holds no control byte;
 * the printable form never depends on the password, is always NUL-terminated when cut, and parses
 * again to the same place when its parts need no percent-encoding.
 * fuzz-sources: src/proto/lv_redisurl.c src/common/lv_common.c
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_redisurl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lv_redisurl_t u, again, other;

static bool no_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* Bytes that print in a URL as themselves (RFC 3986 unreserved), so the clean form reparses. */
static bool plain(const char *s, const char *also)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~", c) ||
              (also && strchr(also, c))))
            return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4 * LV_REDISURL_MAX)
        return 0;
    /* an exact-size copy: a read past the input is caught by ASan */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    const char *why = NULL;
    int rc = lv_redisurl_parse(text, &u, &why);
    if (rc != 0) {
        static const lv_redisurl_t zero;
        if (rc != LV_EINVAL || !why || memcmp(&u, &zero, sizeof(u)) != 0)
            abort();
        goto out;
    }
    if (why)
        abort();
    if (strlen(u.host) > LV_REDISURL_HOST_MAX || strlen(u.path) > LV_REDISURL_PATH_MAX ||
        strlen(u.user) > LV_REDISURL_USER_MAX || strlen(u.password) > LV_REDISURL_PASS_MAX)
        abort();
    if (!no_control(u.host) || !no_control(u.path) || !no_control(u.user) || !no_control(u.password))
        abort();
    if (u.db < 0 || u.db > 15)
        abort();
    if (u.is_unix) {
        if (u.path[0] != '/' || u.host[0] || u.port != 0 || u.user[0] || u.password[0])
            abort();
    } else {
        if (!u.host[0] || u.path[0] || u.port < 1 || u.port > 65535 || (u.user[0] && !u.password[0]))
            abort();
    }

    /* the printable form: the same whatever the password, "***" where one is */
    char clean[LV_REDISURL_MAX + 64], clean2[sizeof(clean)];
    lv_redisurl_clean(&u, clean, sizeof(clean));
    other = u;
    if (other.password[0])
        memcpy(other.password, "Q", 2);
    lv_redisurl_clean(&other, clean2, sizeof(clean2));
    if (strcmp(clean, clean2) != 0)
        abort();
    if (!u.is_unix && (u.password[0] != 0) != (strstr(clean, ":***@") != NULL))
        abort();
    /* cut short: NUL-terminated, a prefix of the whole */
    for (size_t cut = 1; cut < 24; cut++) {
        char small[24];
        memset(small, 'Z', sizeof(small));
        lv_redisurl_clean(&u, small, cut);
        if (strlen(small) >= cut || strncmp(small, clean, strlen(small)) != 0)
            abort();
    }

    /* the printable form parses again to the same place */
    bool reparse = u.is_unix ? plain(u.path, "/") : plain(u.user, NULL);
    if (reparse) {
        if (lv_redisurl_parse(clean, &again, &why) != 0)
            abort();
        if (again.is_unix != u.is_unix || strcmp(again.host, u.host) != 0 || again.port != u.port ||
            strcmp(again.path, u.path) != 0 || strcmp(again.user, u.user) != 0 || again.db != u.db ||
            strcmp(again.password, u.password[0] ? "***" : "") != 0)
            abort();
    }
out:
    free(text);
    return 0;
}
