/* lv_json_str.h - the one JSON string writer: C bytes to a quoted, escaped JSON string. */
#ifndef LV_JSON_STR_H
#define LV_JSON_STR_H

#include <stddef.h>

#include "lv_buf.h"

/** Append s[0..n) as a quoted JSON string (RFC 8259 section 7): '"' and '\\' escaped, control
 * characters (U+0000..U+001F, NUL included) as \b \f \n \r \t or \u00xx, every other byte (UTF-8
 * included) kept as is. LV_EINVAL when s[0..n) is not valid UTF-8 (lv_utf8_valid), so the output
 * is always valid JSON and valid in a WebSocket text frame; LV_ELIMIT (out's cap), LV_ENOMEM.
 * All or nothing: on failure out is restored to its previous length. */
int lv_json_str_append(lv_buf_t *out, const char *s, size_t n);

/** The same for text that may not be UTF-8 (a backend's error message, a name read from the
 * system): each byte that does not start a valid sequence is written as \ufffd (U+FFFD, the
 * replacement character), so the text still goes out. Never LV_EINVAL; otherwise as above. */
int lv_json_str_append_lossy(lv_buf_t *out, const char *s, size_t n);

#endif
