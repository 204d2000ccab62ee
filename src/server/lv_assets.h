/* lv_assets.h - the web UI files embedded at build time (generated table, see tools/embed.c). */
#ifndef LV_ASSETS_H
#define LV_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *path;            /* URL path, e.g. "/index.html" */
    const unsigned char *data;   /* static bytes, NUL-terminated beyond len */
    size_t len;
    const char *etag;            /* strong entity-tag of data, quotes included: "\"<32 hex>\"" */
    const unsigned char *gz;     /* the same file gzip-compressed, or NULL when that saves little */
    size_t gz_len;
    const char *gz_etag;         /* strong entity-tag of gz (another representation, another tag) */
} lv_asset_t;

/** Table ending with an entry whose path is NULL. */
extern const lv_asset_t lv_assets[];

#endif
