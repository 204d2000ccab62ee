/* lv_allowlist.c - comma-list matching for tenants' allowed backends and models (lv_allowlist.h). */
#include "lv_allowlist.h"

#include <string.h>

#include "lv_common.h"

/* The next entry of *p, trimmed: its start and length; *p moves past it and its comma. False at
 * the end. */
static bool next_entry(const char **p, const char **start, size_t *len)
{
    while (**p) {
        const char *s = *p, *e = strchr(s, ',');
        if (!e)
            e = s + strlen(s);
        *p = *e ? e + 1 : e;
        while (s < e && *s == ' ')
            s++;
        while (e > s && e[-1] == ' ')
            e--;
        if (e > s) {
            *start = s;
            *len = (size_t)(e - s);
            return true;
        }
    }
    return false;
}

/* a == b, or one is the other plus ":latest" */
static bool same_name(const char *a, size_t alen, const char *b, size_t blen)
{
    static const char latest[] = ":latest";
    const size_t ll = sizeof(latest) - 1;
    if (alen == blen)
        return memcmp(a, b, alen) == 0;
    if (alen == blen + ll)
        return memcmp(a, b, blen) == 0 && memcmp(a + blen, latest, ll) == 0 && !memchr(b, ':', blen);
    if (blen == alen + ll)
        return memcmp(a, b, alen) == 0 && memcmp(b + alen, latest, ll) == 0 && !memchr(a, ':', alen);
    return false;
}

bool lv_allowlist_restricts(const char *list)
{
    const char *p = list ? list : "", *s;
    size_t n;
    return next_entry(&p, &s, &n);
}

bool lv_allowlist_has(const char *list, const char *item)
{
    const char *p = list ? list : "", *s;
    size_t n, ilen = item ? strlen(item) : 0;
    if (!lv_allowlist_restricts(list))
        return true;
    while (ilen && next_entry(&p, &s, &n))
        if (same_name(s, n, item, ilen))
            return true;
    return false;
}

int lv_allowlist_at(const char *list, size_t i, char *out, size_t out_size)
{
    const char *p = list ? list : "", *s;
    size_t n;
    while (next_entry(&p, &s, &n)) {
        if (i-- == 0) {
            if (out_size) {
                size_t k = LV_MIN(n, out_size - 1);
                memcpy(out, s, k);
                out[k] = '\0';
            }
            return 0;
        }
    }
    return LV_ENOTFOUND;
}
