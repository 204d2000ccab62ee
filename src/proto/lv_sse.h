/* lv_sse.h - incremental Server-Sent Events parser (the text/event-stream format of the WHATWG
 * HTML standard, section 9.2), used on streamed chat/completions answers. Pure: no I/O. */
#ifndef LV_SSE_H
#define LV_SSE_H

#include <stddef.h>

#include "lv_buf.h"

/* Only "data" fields matter to us, and "error" fields, which llama.cpp's server sends instead of
 * "data" when a streamed answer fails after its 200 head: the lines of either are joined into the
 * event's data, and event_is_error tells the callback which it was. "event",
 * "id", "retry" and unknown fields are ignored, as are comment lines (starting with ':').
 * State is kept between feeds, so lines, CRLF pairs and events may be split anywhere. */
typedef struct {
    lv_buf_t line;       /* the unterminated tail of the input, capped at max_line_bytes */
    lv_buf_t data;       /* data of the event being assembled, capped at max_line_bytes */
    int have_data;       /* a data field was seen since the last dispatch */
    int skip_lf;         /* the previous feed ended in '\r': a leading '\n' is its pair */
    int first_line;      /* a UTF-8 BOM is skipped at the very start of the stream */
    int err;             /* sticky: once non-zero every feed returns it */
    int event_is_error;  /* during the callback: the event had an "error" field (llama.cpp) */
} lv_sse_t;

/** Data callback: data[0..len) is the event's data ("data:" lines joined with '\n', one leading
 * space after each "data:" removed), NUL-terminated, valid only during the call. Return 0 to go
 * on; any other value stops the parse and is returned by lv_sse_feed()/lv_sse_finish(). The
 * callback must not feed the same parser. */
typedef int (*lv_sse_data_cb)(void *ud, const char *data, size_t len);

/** Start a parser. max_line_bytes caps both a single line and one event's joined data. Allocates
 * nothing until bytes arrive; release with lv_sse_free(). */
void lv_sse_init(lv_sse_t *s, size_t max_line_bytes);

/** Feed the next n bytes of the stream (n may be 0). Calls on_data once per complete event, in
 * order, synchronously. Returns 0; LV_ELIMIT when a line or an event passes the cap; LV_ENOMEM;
 * or the callback's non-zero value. Errors are sticky: later feeds return the same value without
 * parsing. */
int lv_sse_feed(lv_sse_t *s, const char *p, size_t n, lv_sse_data_cb on_data, void *ud);

/** End of stream. The standard drops an event that was not closed by a blank line; backends
 * sometimes end on a single newline, so this is lenient: an unterminated last line is processed
 * as a line and pending data is dispatched. Same returns as lv_sse_feed(). */
int lv_sse_finish(lv_sse_t *s, lv_sse_data_cb on_data, void *ud);

/** Free the buffers; the parser may be reused after lv_sse_init(). */
void lv_sse_free(lv_sse_t *s);

#endif
