/* lv_json_str.c - JSON string escaping over lv_buf, with lv_utf8 deciding what is text. */
#include "lv_json_str.h"

#include <stdbool.h>
#include <string.h>

#include "lv_common.h"
#include "lv_utf8.h"

/* Copies runs of bytes that need no escape in one append each. valid: s is known to be UTF-8, so
 * bytes >= 0x80 pass through without looking at them one sequence at a time. */
static int append(lv_buf_t *out, const char *s, size_t n, bool valid)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t start_len = out->len;
    size_t run = 0; /* start of the pending run of bytes copied as they are */
    size_t i = 0;
    int rc;

    if ((rc = lv_buf_append(out, "\"", 1)) != 0)
        goto out;
    while (i < n) {
        unsigned char c = u[i];
        char esc[6];
        size_t esc_len = 2;
        if (c >= 0x80) {
            size_t l = valid ? 1 : lv_utf8_seq_len(u + i, n - i);
            if (l) {
                i += l;
                continue;
            }
            memcpy(esc, "\\ufffd", 6);
            esc_len = 6;
        } else if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
        } else if (c < 0x20) {
            esc[0] = '\\';
            switch (c) {
            case '\b': esc[1] = 'b'; break;
            case '\f': esc[1] = 'f'; break;
            case '\n': esc[1] = 'n'; break;
            case '\r': esc[1] = 'r'; break;
            case '\t': esc[1] = 't'; break;
            default:
                memcpy(esc + 1, "u00", 3);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                esc_len = 6;
                break;
            }
        } else {
            i++;
            continue;
        }
        if ((rc = lv_buf_append(out, s + run, i - run)) != 0 || (rc = lv_buf_append(out, esc, esc_len)) != 0)
            goto out;
        i++;
        run = i;
    }
    if ((rc = lv_buf_append(out, s + run, n - run)) != 0)
        goto out;
    rc = lv_buf_append(out, "\"", 1);
out:
    if (rc)
        lv_buf_truncate(out, start_len);
    return rc;
}

int lv_json_str_append(lv_buf_t *out, const char *s, size_t n)
{
    if (!lv_utf8_valid(s, n))
        return LV_EINVAL;
    return append(out, s, n, true);
}

int lv_json_str_append_lossy(lv_buf_t *out, const char *s, size_t n)
{
    return append(out, s, n, lv_utf8_valid(s, n));
}
