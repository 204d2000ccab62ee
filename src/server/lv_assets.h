/* lv_assets.h - the web UI files embedded at build time (generated table, see tools/embed.c). */
#ifndef LV_ASSETS_H
#define LV_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *path;            /* URL path, e.g. "/index.html" */
    const unsigned char *data;   /* static bytes, NUL-terminated beyond len */
    size_t len;
} lv_asset_t;

/** Table ending with a {NULL, NULL, 0} entry. */
extern const lv_asset_t lv_assets[];

#endif
