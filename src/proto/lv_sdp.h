/* lv_sdp.h - the check every WebRTC offer (POST /offer) passes before GStreamer sees it: caps on
 * size, line count and line length, the line grammar of RFC 8866 as browsers and robots write it,
 * and the media livevlm takes (at least one m=video that sends VP8 or H.264; m=audio tolerated and
 * answered inactive; anything else refused). Pure: no allocation, no I/O, fuzzed
 * (tests/fuzz/fuzz_sdp.c). It does not rewrite the offer; webrtcbin parses the same bytes again. */
#ifndef LV_SDP_H
#define LV_SDP_H

#include <stddef.h>

/* Defaults for lv_sdp_caps_t. A Chromium offer with audio, video and every ICE candidate of a
 * machine with a few interfaces is about 7 KB, 180 lines, its longest line ~120 bytes. */
#define LV_SDP_MAX_BYTES 65536
#define LV_SDP_MAX_LINES 2048
#define LV_SDP_MAX_LINE_BYTES 1024
#define LV_SDP_MAX_MEDIA 16   /* m= sections */
#define LV_SDP_MAX_FORMATS 64 /* payload types on one m= line */

typedef struct {
    size_t max_bytes; /* the whole offer */
    size_t max_lines;
    size_t max_line_bytes; /* one line without its CRLF */
} lv_sdp_caps_t;

/* Video codecs livevlm decodes (bits of lv_sdp_info_t.video_codecs). */
enum { LV_SDP_VP8 = 1u << 0, LV_SDP_H264 = 1u << 1 };

typedef struct {
    unsigned n_media, n_video, n_audio; /* m= sections of each kind */
    int video_index;                    /* 0-based m= index of the first section that sends VP8 or H.264 */
    unsigned video_codecs;              /* LV_SDP_* offered in that section */
    /* on failure: a stable code for the API's error body ("sdp_too_large", "bad_sdp", "no_video",
     * "unsupported_codec", "unsupported_media"), static */
    const char *code;
} lv_sdp_info_t;

/** Fill caps with the LV_SDP_MAX_* defaults. */
void lv_sdp_caps_default(lv_sdp_caps_t *caps);

/** Check that sdp[0..len) is an offer livevlm can take. Lines end in CRLF or LF (RFC 8866
 * section 5 asks parsers to accept both); every line is `<letter>=<value>` with no control bytes;
 * the first three are v=0, o= (six fields), s=; a t= comes before the first m=; session and media
 * sections hold only the line types RFC 8866 allows there. Each m= line is `<media> <port>
 * <proto> <fmt>...` with a DTLS-SRTP profile (UDP/TLS/RTP/SAVPF, TCP/DTLS/RTP/SAVPF or RTP/SAVPF)
 * and 1..LV_SDP_MAX_FORMATS payload types; each section has a=mid, and ICE credentials
 * (ice-ufrag, ice-pwd) and a fingerprint are given for it or for the session. m=video and
 * m=audio only. A video section counts when its port is not 0, it sends (sendrecv or sendonly, or
 * no direction) and an a=rtpmap of its payload types names VP8 or H264.
 * out is filled in any case (out->code on failure). why[0..why_size) gets a sentence for people
 * on failure (naming the codecs offered when none is taken). Returns 0; LV_ELIMIT over a cap
 * (code sdp_too_large); LV_EINVAL otherwise. caps NULL = defaults. */
int lv_sdp_check(const char *sdp, size_t len, const lv_sdp_caps_t *caps, lv_sdp_info_t *out, char *why,
                 size_t why_size);

#endif
