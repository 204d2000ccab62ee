/* lv_sdp.c - the offer check of lv_sdp.h: one pass over the lines, one small state per m= section. */
#include "lv_sdp.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lv_common.h"

#define OFFERED_MAX 120 /* "VP9, AV1, H265": the names quoted back to people */

/* What one m= section said, judged when the next one starts or the offer ends. */
typedef struct {
    bool open;
    bool video, audio;
    bool port_zero;
    bool sends; /* sendrecv / sendonly (or no direction given) */
    bool has_mid, has_ufrag, has_pwd, has_fingerprint;
    unsigned n_fmt;
    uint8_t fmt[LV_SDP_MAX_FORMATS];
    unsigned codecs;           /* LV_SDP_* */
    char offered[OFFERED_MAX]; /* other video codecs named by rtpmap, comma separated */
} media_t;

typedef struct {
    lv_sdp_info_t *out;
    char *why;
    size_t why_size;
    bool s_ufrag, s_pwd, s_fingerprint; /* given at session level */
    bool s_sends;                       /* the session-level direction (default sendrecv) */
    bool seen_t;
    media_t m;
    char offered[OFFERED_MAX]; /* every video codec offered, for the no-codec message */
} check_t;

static int fail(check_t *c, int rc, const char *code, size_t line_no, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(check_t *c, int rc, const char *code, size_t line_no, const char *fmt, ...)
{
    c->out->code = code;
    if (c->why && c->why_size) {
        char text[200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        if (line_no)
            snprintf(c->why, c->why_size, "SDP line %zu: %s", line_no, text);
        else
            snprintf(c->why, c->why_size, "%s", text);
    }
    return rc;
}

static bool view_eq(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(p, lit, n) == 0;
}

static bool view_starts(const char *p, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    return n >= k && memcmp(p, lit, k) == 0;
}

/* An unsigned decimal of 1..digits digits at most max; advances *i. */
static bool parse_uint(const char *p, size_t n, size_t *i, unsigned max, unsigned *v)
{
    size_t start = *i;
    unsigned long acc = 0;
    while (*i < n && p[*i] >= '0' && p[*i] <= '9' && *i - start < 6) {
        acc = acc * 10 + (unsigned long)(p[*i] - '0');
        (*i)++;
    }
    if (*i == start || acc > max || (*i < n && p[*i] >= '0' && p[*i] <= '9'))
        return false;
    *v = (unsigned)acc;
    return true;
}

/* Split off the next space-separated token of p[*i..n) (single spaces, as RFC 8866 writes them). */
static bool next_token(const char *p, size_t n, size_t *i, const char **tok, size_t *tok_len)
{
    if (*i >= n)
        return false;
    size_t start = *i;
    while (*i < n && p[*i] != ' ')
        (*i)++;
    *tok = p + start;
    *tok_len = *i - start;
    if (*i < n)
        (*i)++; /* the space */
    return *tok_len > 0;
}

/* Append name to a comma-separated list once (case-insensitively), as far as it fits. */
static void list_add(char *list, const char *name, size_t name_len)
{
    size_t used = strlen(list);
    for (const char *q = list; *q;) {
        size_t k = strcspn(q, ",");
        if (k == name_len && strncasecmp(q, name, k) == 0)
            return;
        q += k;
        while (*q == ',' || *q == ' ')
            q++;
    }
    if (used + name_len + 3 > OFFERED_MAX)
        return;
    if (used)
        memcpy(list + used, ", ", 2), used += 2;
    memcpy(list + used, name, name_len);
    list[used + name_len] = '\0';
}

/* m=<media> <port>[/<n>] <proto> <fmt> ... */
static int media_line(check_t *c, const char *v, size_t n, size_t line_no)
{
    media_t *m = &c->m;
    const char *tok;
    size_t tl, i = 0;
    unsigned port, count;
    memset(m, 0, sizeof(*m));
    m->open = true;
    m->sends = c->s_sends;
    if (++c->out->n_media > LV_SDP_MAX_MEDIA)
        return fail(c, LV_ELIMIT, "sdp_too_large", line_no, "more than 16 m= sections");
    if (!next_token(v, n, &i, &tok, &tl))
        return fail(c, LV_EINVAL, "bad_sdp", line_no, "m= line without a media type");
    if (view_eq(tok, tl, "video")) {
        m->video = true;
        c->out->n_video++;
    } else if (view_eq(tok, tl, "audio")) {
        m->audio = true;
        c->out->n_audio++;
    } else if (view_eq(tok, tl, "application")) {
        return fail(c, LV_EINVAL, "unsupported_media", line_no,
                    "data channels (m=application) are not taken: offer video only");
    } else {
        return fail(c, LV_EINVAL, "unsupported_media", line_no,
                    "m= section of an unsupported media type (only video, and "
                    "audio which is answered inactive)");
    }
    if (!parse_uint(v, n, &i, 65535, &port) || (i < n && v[i] == '/' && (i++, !parse_uint(v, n, &i, 64, &count))) ||
        i >= n || v[i] != ' ')
        return fail(c, LV_EINVAL, "bad_sdp", line_no, "m= line with a bad port");
    i++;
    m->port_zero = port == 0;
    if (!next_token(v, n, &i, &tok, &tl) || !(view_eq(tok, tl, "UDP/TLS/RTP/SAVPF") ||
                                              view_eq(tok, tl, "TCP/DTLS/RTP/SAVPF") || view_eq(tok, tl, "RTP/SAVPF")))
        return fail(c, LV_EINVAL, "unsupported_media", line_no,
                    "m= line whose transport is not WebRTC's DTLS-SRTP (UDP/TLS/RTP/SAVPF)");
    while (i < n) {
        unsigned pt;
        if (m->n_fmt == LV_SDP_MAX_FORMATS)
            return fail(c, LV_ELIMIT, "sdp_too_large", line_no, "more than 64 payload types on one m= line");
        if (!parse_uint(v, n, &i, 127, &pt) || (i < n && v[i] != ' ') || (i < n && ++i == n))
            return fail(c, LV_EINVAL, "bad_sdp", line_no, "m= line with a payload type that is not 0..127");
        m->fmt[m->n_fmt++] = (uint8_t)pt;
    }
    if (m->n_fmt == 0)
        return fail(c, LV_EINVAL, "bad_sdp", line_no, "m= line without payload types");
    return 0;
}

/* a=rtpmap:<pt> <name>/<clock>[/<params>] inside a video section: which codec a payload type is. */
static int rtpmap(check_t *c, const char *v, size_t n, size_t line_no)
{
    media_t *m = &c->m;
    size_t i = 0;
    unsigned pt;
    if (!parse_uint(v, n, &i, 127, &pt) || i >= n || v[i] != ' ')
        return fail(c, LV_EINVAL, "bad_sdp", line_no, "a=rtpmap with a bad payload type");
    const char *name = v + ++i;
    size_t name_len = 0;
    while (i < n && v[i] != '/') {
        char ch = v[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
              ch == '_' || ch == '.') ||
            name_len == 32)
            return fail(c, LV_EINVAL, "bad_sdp", line_no, "a=rtpmap with a bad encoding name");
        i++, name_len++;
    }
    unsigned clock;
    if (name_len == 0 || i >= n || (i++, !parse_uint(v, n, &i, 10000000, &clock)))
        return fail(c, LV_EINVAL, "bad_sdp", line_no, "a=rtpmap without encoding/clock-rate");
    if (!m->video)
        return 0;
    bool listed = false;
    for (unsigned k = 0; k < m->n_fmt; k++)
        listed |= m->fmt[k] == pt;
    if (!listed)
        return 0; /* RFC 8866 6.6: a map for a type the m= line does not list means nothing */
    if (name_len == 3 && strncasecmp(name, "VP8", 3) == 0)
        m->codecs |= LV_SDP_VP8;
    else if (name_len == 4 && strncasecmp(name, "H264", 4) == 0)
        m->codecs |= LV_SDP_H264;
    else if (!(name_len == 3 && strncasecmp(name, "rtx", 3) == 0) &&
             !(name_len == 3 && strncasecmp(name, "red", 3) == 0) &&
             !(name_len == 6 && strncasecmp(name, "ulpfec", 6) == 0) &&
             !(name_len >= 7 && strncasecmp(name, "flexfec", 7) == 0))
        list_add(m->offered, name, name_len); /* repair formats are not codecs to name */
    return 0;
}

static int attribute(check_t *c, const char *v, size_t n, size_t line_no)
{
    bool session = !c->m.open;
    media_t *m = &c->m;
    bool dir_send = view_eq(v, n, "sendrecv") || view_eq(v, n, "sendonly");
    bool dir_nosend = view_eq(v, n, "recvonly") || view_eq(v, n, "inactive");
    if (dir_send || dir_nosend) {
        if (session)
            c->s_sends = dir_send;
        else
            m->sends = dir_send;
    } else if (view_starts(v, n, "ice-ufrag:")) {
        *(session ? &c->s_ufrag : &m->has_ufrag) = n > 10;
    } else if (view_starts(v, n, "ice-pwd:")) {
        *(session ? &c->s_pwd : &m->has_pwd) = n > 8;
    } else if (view_starts(v, n, "fingerprint:")) {
        *(session ? &c->s_fingerprint : &m->has_fingerprint) = n > 12;
    } else if (!session && view_starts(v, n, "mid:")) {
        m->has_mid = n > 4;
    } else if (!session && view_starts(v, n, "rtpmap:")) {
        return rtpmap(c, v + 7, n - 7, line_no);
    }
    return 0;
}

/* The section that just ended: well formed, and does it carry video we take? */
static int media_end(check_t *c, size_t line_no)
{
    media_t *m = &c->m;
    if (!m->open)
        return 0;
    unsigned idx = c->out->n_media - 1;
    char which[48];
    snprintf(which, sizeof(which), "%u (m=%s)", idx, m->video ? "video" : "audio");
    if (!m->has_mid)
        return fail(c, LV_EINVAL, "bad_sdp", 0, "m= section %s has no a=mid (WebRTC offers name every section)", which);
    if (!(m->has_ufrag || c->s_ufrag) || !(m->has_pwd || c->s_pwd))
        return fail(c, LV_EINVAL, "bad_sdp", 0, "m= section %s has no ICE credentials (a=ice-ufrag, a=ice-pwd)", which);
    if (!(m->has_fingerprint || c->s_fingerprint))
        return fail(c, LV_EINVAL, "bad_sdp", 0, "m= section %s has no DTLS fingerprint (a=fingerprint)", which);
    if (m->video && !m->port_zero && m->sends) {
        if (m->codecs && c->out->video_index < 0) {
            c->out->video_index = (int)idx;
            c->out->video_codecs = m->codecs;
        }
        for (const char *q = m->offered; *q;) {
            size_t k = strcspn(q, ",");
            list_add(c->offered, q, k);
            q += k;
            while (*q == ',' || *q == ' ')
                q++;
        }
    }
    (void)line_no;
    return 0;
}

/* Which line types RFC 8866 section 5 allows where: session part, media part. */
static bool session_type(char t)
{
    return t && strchr("vosiuepcbtrzka", t) != NULL;
}
static bool media_type(char t)
{
    return t && strchr("icbka", t) != NULL;
}

static int one_line(check_t *c, const char *p, size_t n, size_t line_no)
{
    if (n < 2 || p[1] != '=' || p[0] < 'a' || p[0] > 'z')
        return fail(c, LV_EINVAL, "bad_sdp", line_no, "not a <type>=<value> line");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch < 0x20 || ch == 0x7f)
            return fail(c, LV_EINVAL, "bad_sdp", line_no, "control byte in a line");
    }
    char t = p[0];
    const char *v = p + 2;
    size_t vn = n - 2;
    if (line_no == 1)
        return t == 'v' && view_eq(v, vn, "0") ? 0 : fail(c, LV_EINVAL, "bad_sdp", 1, "an offer starts with v=0");
    if (line_no == 2) {
        size_t i = 0, fields = 0;
        const char *tok;
        size_t tl;
        while (next_token(v, vn, &i, &tok, &tl))
            fields++;
        if (t != 'o' || fields != 6 || i != vn)
            return fail(c, LV_EINVAL, "bad_sdp", 2, "the second line must be o= with six fields");
        return 0;
    }
    if (line_no == 3)
        return t == 's' ? 0 : fail(c, LV_EINVAL, "bad_sdp", 3, "the third line must be s=");
    if (t == 'v' || t == 'o' || t == 's')
        return fail(c, LV_EINVAL, "bad_sdp", line_no, "a second v=, o= or s= line");
    if (t == 'm') {
        int rc = media_end(c, line_no);
        if (rc)
            return rc;
        if (!c->seen_t)
            return fail(c, LV_EINVAL, "bad_sdp", line_no, "no t= line before the first m= section");
        return media_line(c, v, vn, line_no);
    }
    if (c->m.open ? !media_type(t) : !session_type(t)) {
        char what[8] = {t, '=', '\0'};
        return fail(c, LV_EINVAL, "bad_sdp", line_no, "a %s line is not allowed here", what);
    }
    if (t == 't')
        c->seen_t = true;
    if (t == 'a')
        return attribute(c, v, vn, line_no);
    return 0;
}

void lv_sdp_caps_default(lv_sdp_caps_t *caps)
{
    caps->max_bytes = LV_SDP_MAX_BYTES;
    caps->max_lines = LV_SDP_MAX_LINES;
    caps->max_line_bytes = LV_SDP_MAX_LINE_BYTES;
}

int lv_sdp_check(const char *sdp, size_t len, const lv_sdp_caps_t *caps, lv_sdp_info_t *out, char *why, size_t why_size)
{
    lv_sdp_caps_t defaults;
    check_t c;
    int rc = 0;
    if (!caps) {
        lv_sdp_caps_default(&defaults);
        caps = &defaults;
    }
    memset(out, 0, sizeof(*out));
    out->video_index = -1;
    memset(&c, 0, sizeof(c));
    c.out = out;
    c.why = why;
    c.why_size = why_size;
    c.s_sends = true;
    if (why && why_size)
        why[0] = '\0';
    if (len > caps->max_bytes) {
        char cap[32];
        snprintf(cap, sizeof(cap), "%zu", caps->max_bytes);
        return fail(&c, LV_ELIMIT, "sdp_too_large", 0, "the offer is larger than %s bytes", cap);
    }
    if (len == 0)
        return fail(&c, LV_EINVAL, "bad_sdp", 0, "the offer is empty");
    size_t pos = 0, line_no = 0;
    while (pos < len) {
        const char *nl = memchr(sdp + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - sdp) : len;
        size_t n = end - pos;
        if (n && sdp[pos + n - 1] == '\r')
            n--;
        if (++line_no > caps->max_lines) {
            char cap[32];
            snprintf(cap, sizeof(cap), "%zu", caps->max_lines);
            return fail(&c, LV_ELIMIT, "sdp_too_large", 0, "the offer has more than %s lines", cap);
        }
        if (n > caps->max_line_bytes) {
            char cap[32];
            snprintf(cap, sizeof(cap), "%zu", caps->max_line_bytes);
            return fail(&c, LV_ELIMIT, "sdp_too_large", line_no, "a line is longer than %s bytes", cap);
        }
        if ((rc = one_line(&c, sdp + pos, n, line_no)) != 0)
            return rc;
        pos = nl ? end + 1 : len;
    }
    if (line_no < 3)
        return fail(&c, LV_EINVAL, "bad_sdp", 0, "the offer ends before its v=, o= and s= lines");
    if ((rc = media_end(&c, line_no)) != 0)
        return rc;
    if (out->n_video == 0)
        return fail(&c, LV_EINVAL, "no_video", 0, "the offer has no video (m=video) section: send a camera track");
    if (out->video_index < 0) {
        if (c.offered[0])
            return fail(&c, LV_EINVAL, "unsupported_codec", 0,
                        "the offer's video codecs (%s) are not taken: offer VP8 or H.264", c.offered);
        return fail(&c, LV_EINVAL, "no_video", 0,
                    "the offer has no video section that sends VP8 or H.264 (a sending "
                    "direction, a port other than 0, and an a=rtpmap naming the codec)");
    }
    return 0;
}
