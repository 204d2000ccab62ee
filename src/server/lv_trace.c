/* lv_trace.c - a request's W3C traceparent taken in at the server's edge, and a session's log
 * context (lv_trace.h). */
#include "lv_trace.h"

#include <string.h>

#include "lv_app.h"
#include "lv_session.h"
#include "lv_stat.h"

bool lv_trace_from_head(lv_app_t *app, const lv_http1_req_t *head, const char *ip, lv_trace_t *out)
{
    memset(out, 0, sizeof(*out));
    const lv_view_t *v = head ? lv_http1_header(head, "traceparent") : NULL;
    if (!v)
        return false;
    lv_traceparent_t tp;
    if (lv_traceparent_parse(v->ptr, v->len, &tp) != 0) {
        /* the bytes are the client's: never written to the log, only their length */
        lv_stat_trace_invalid(app);
        lv_log_ctx_t ctx = {.ip = ip};
        LV_DEBUG_CTX(&ctx, "a malformed traceparent header (%zu bytes) from %s was ignored; a new trace is used",
                     v->len, ip ? ip : "?");
        return false;
    }
    memcpy(out->trace_id, tp.trace_id, sizeof(out->trace_id));
    const lv_view_t *st = lv_http1_header(head, "tracestate");
    if (st && lv_tracestate_ok(st->ptr, st->len)) {
        memcpy(out->state, st->ptr, st->len);
        out->state[st->len] = '\0';
    }
    return true;
}

lv_log_ctx_t lv_trace_log_ctx(const lv_session_t *s, const char *ip)
{
    /* an account's principal key is "u:<user id>" (lv_principal.h); an address otherwise */
    const char *user = strncmp(s->rec.principal, "u:", 2) == 0 ? s->rec.principal + 2 : NULL;
    lv_log_ctx_t ctx = {.tenant = s->rec.tenant, .user = user, .session = s->rec.id,
                        .trace_id = s->trace.trace_id, .ip = ip};
    return ctx;
}
