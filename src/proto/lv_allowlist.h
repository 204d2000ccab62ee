/* lv_allowlist.h - a tenant's allow-lists of backend ids and models (lv_acct.h lv_tenant_t
 * backends/models): comma-separated names, "" = everything. Pure: no I/O, no allocation. */
#ifndef LV_ALLOWLIST_H
#define LV_ALLOWLIST_H

#include <stdbool.h>
#include <stddef.h>

#define LV_ALLOWLIST_MAX 513 /* bytes, the NUL included (lv_acct.h LV_ACCT_LIST_MAX) */

/** Whether list ("" or NULL = all) names item. Entries are trimmed of spaces; empty entries are
 * skipped. A model entry without a tag also matches item "<entry>:latest" and the other way
 * round (Ollama lists "llava:latest" for "llava", as lv_pool_resolve matches them). An empty item
 * is allowed only by an empty list. */
bool lv_allowlist_has(const char *list, const char *item);

/** Whether list restricts anything (not NULL, and holds a non-empty entry). */
bool lv_allowlist_restricts(const char *list);

/** Copy the i-th non-empty entry (0-based) of list into out (NUL-terminated, cut to out_size).
 * 0, or LV_ENOTFOUND past the last entry. */
int lv_allowlist_at(const char *list, size_t i, char *out, size_t out_size);

#endif
