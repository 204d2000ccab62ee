/* lv_store_mem.h - the embedded store: session records in a hash table in this process, behind
 * the store port (src/core/lv_store.h). Every call completes before it returns. */
#ifndef LV_STORE_MEM_H
#define LV_STORE_MEM_H

#include <stddef.h>

#include "lv_store.h"

/** Create an empty store holding at most max_records records (create completes with LV_ELIMIT
 * past it). The caller owns it: free with st->ops->destroy(st). LV_ENOMEM. */
int lv_store_mem_create(size_t max_records, lv_store_t **out);

#endif
