/* fuzz_allowlist.c - libFuzzer driver for the tenants' allow-list matcher (lv_allowlist.h: the
 * comma lists an admin types, carried to workers in a cluster job's "ab"). The input is
 * "<list>\n<item>" (no newline: the whole input is the list, the item ""). Checks, against a
 * plain model of the rules written here: restricts is "some entry is non-empty after trimming";
 * an unrestricted list has every item; a restricted one has exactly its entries and their
 * ":latest" twins, never ""; every entry read with lv_allowlist_at is found by lv_allowlist_has;
 * lv_allowlist_at stops at the entry count, and a cut copy is NUL-terminated and a prefix.
 * fuzz-sources: src/proto/lv_allowlist.c src/common/lv_common.c
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_allowlist.h"
#include "lv_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INPUT_MAX (4 * LV_ALLOWLIST_MAX)
#define ENTRIES_MAX 64 /* entries the model checks one by one; the rest only through has() */

/* An exact-size NUL-terminated copy of [p, p+n) (ASan catches a read past it); NULL on no memory. */
static char *dup_exact(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* The model: the i-th non-empty entry of list after trimming spaces, as [*start, *start+*len). */
static bool model_entry(const char *list, size_t want, const char **start, size_t *len)
{
    size_t i = 0;
    const char *p = list;
    for (;;) {
        const char *e = strchr(p, ',');
        const char *end = e ? e : p + strlen(p);
        const char *s = p, *t = end;
        while (s < t && *s == ' ')
            s++;
        while (t > s && t[-1] == ' ')
            t--;
        if (t > s) {
            if (i == want) {
                *start = s;
                *len = (size_t)(t - s);
                return true;
            }
            i++;
        }
        if (!e)
            return false;
        p = e + 1;
    }
}

/* The model of same_name: equal, or one is the other (without a ':') plus ":latest". */
static bool model_same(const char *a, size_t an, const char *b, size_t bn)
{
    if (an == bn)
        return memcmp(a, b, an) == 0;
    if (an > bn) {
        const char *t = a;
        size_t tn = an;
        a = b, an = bn, b = t, bn = tn; /* a is the shorter */
    }
    return bn == an + 7 && memcmp(a, b, an) == 0 && memcmp(b + an, ":latest", 7) == 0 && !memchr(a, ':', an);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > INPUT_MAX)
        return 0;
    const uint8_t *nl = memchr(data, '\n', size);
    size_t list_len = nl ? (size_t)(nl - data) : size;
    /* C strings: a NUL inside the input ends the list or the item there, as it would in a caller */
    char *list = dup_exact(data, list_len);
    char *item = nl ? dup_exact(nl + 1, size - list_len - 1) : dup_exact(data, 0);
    if (!list || !item)
        goto out;

    const char *s;
    size_t n;
    bool restricts = model_entry(list, 0, &s, &n);
    if (lv_allowlist_restricts(list) != restricts)
        abort();
    /* NULL and "" are "all": they restrict nothing and have everything */
    if (lv_allowlist_restricts(NULL) || !lv_allowlist_has(NULL, item) || !lv_allowlist_has("", item))
        abort();

    /* has(item) against the model */
    bool want = !restricts;
    size_t item_len = strlen(item);
    for (size_t i = 0; restricts && item_len && model_entry(list, i, &s, &n); i++)
        if (model_same(s, n, item, item_len)) {
            want = true;
            break;
        }
    if (lv_allowlist_has(list, item) != want)
        abort();
    if (restricts && lv_allowlist_has(list, ""))
        abort();

    /* at(): each entry as the model reads it, found again by has(); LV_ENOTFOUND past the last */
    size_t i = 0;
    char whole[LV_ALLOWLIST_MAX * 4 + 1], small[8];
    for (; i < ENTRIES_MAX && model_entry(list, i, &s, &n); i++) {
        if (lv_allowlist_at(list, i, whole, sizeof(whole)) != 0 || strlen(whole) != n || memcmp(whole, s, n) != 0)
            abort();
        if (!lv_allowlist_has(list, whole))
            abort();
        memset(small, 'Z', sizeof(small));
        if (lv_allowlist_at(list, i, small, sizeof(small)) != 0 || strlen(small) >= sizeof(small) ||
            strncmp(small, whole, strlen(small)) != 0)
            abort();
        if (lv_allowlist_at(list, i, small, 0) != 0) /* no room: found, nothing written */
            abort();
    }
    if (i < ENTRIES_MAX && lv_allowlist_at(list, i, whole, sizeof(whole)) != LV_ENOTFOUND)
        abort();
out:
    free(list);
    free(item);
    return 0;
}
