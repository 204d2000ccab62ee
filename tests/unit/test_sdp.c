/* test_sdp.c - the WebRTC offer check (lv_sdp.h) on a real Chromium offer (tests/data/
 * chromium-offer-av.sdp: getUserMedia audio+video, every candidate gathered) and on offers edited
 * from it: each rule refuses what it should, with the code and a sentence that says why. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lv_common.h"
#include "lv_sdp.h"

static char *offer;     /* the fixture, NUL-terminated */
static size_t offer_len;

static int load_fixture(void **state)
{
    const char *candidates[] = {"tests/data/chromium-offer-av.sdp", NULL, NULL};
    char env_path[1100], exe_path[1100], exe[900];
    const char *env = getenv("LV_TEST_DATA");
    if (env) {
        snprintf(env_path, sizeof env_path, "%.1000s/chromium-offer-av.sdp", env);
        candidates[1] = env_path;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(exe_path, sizeof exe_path, "%.900s/../../tests/data/chromium-offer-av.sdp", exe);
        candidates[2] = exe_path;
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(candidates); i++) {
        FILE *f = candidates[i] ? fopen(candidates[i], "rb") : NULL;
        if (!f)
            continue;
        offer = malloc(LV_SDP_MAX_BYTES + 1);
        offer_len = fread(offer, 1, LV_SDP_MAX_BYTES, f);
        offer[offer_len] = '\0';
        fclose(f);
        return offer_len > 0 ? 0 : -1;
    }
    fprintf(stderr, "tests/data/chromium-offer-av.sdp not found (run from the repository root)\n");
    return -1;
}

static int free_fixture(void **state)
{
    free(offer);
    return 0;
}

/* A copy of src with every occurrence of from replaced by to (caller frees). */
static char *replace_all(const char *src, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), count = 0;
    for (const char *p = src; (p = strstr(p, from)) != NULL; p += fl)
        count++;
    char *out = malloc(strlen(src) + count * (tl + 1) + 1), *w = out;
    const char *p = src, *q;
    while ((q = strstr(p, from)) != NULL) {
        memcpy(w, p, (size_t)(q - p));
        w += q - p;
        memcpy(w, to, tl);
        w += tl;
        p = q + fl;
    }
    memcpy(w, p, strlen(p) + 1);
    return out;
}

/* A copy of src without the lines that contain any of the needles (NULL-terminated list). */
static char *drop_lines(const char *src, const char *const *needles)
{
    char *out = malloc(strlen(src) + 1), *w = out;
    const char *p = src;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
        bool drop = false;
        for (size_t i = 0; needles[i]; i++) {
            const char *hit = strstr(p, needles[i]);
            drop |= hit && hit < p + n;
        }
        if (!drop) {
            memcpy(w, p, n);
            w += n;
        }
        p += n;
    }
    *w = '\0';
    return out;
}

/* Check text with default caps; returns rc, out and why filled. */
static int check(const char *text, lv_sdp_info_t *out, char *why, size_t why_size)
{
    return lv_sdp_check(text, strlen(text), NULL, out, why, why_size);
}

static void expect_refused(char *text, int rc, const char *code, const char *why_part)
{
    lv_sdp_info_t info;
    char why[256];
    int got = check(text, &info, why, sizeof why);
    if (got != rc || !info.code || strcmp(info.code, code) != 0 || !strstr(why, why_part))
        fail_msg("expected %d %s '%s', got %d %s '%s'", rc, code, why_part, got, info.code ? info.code : "-", why);
    free(text);
}

static void test_chromium_offer(void **state)
{
    lv_sdp_info_t info;
    char why[256];
    assert_int_equal(lv_sdp_check(offer, offer_len, NULL, &info, why, sizeof why), 0);
    assert_int_equal(info.n_media, 2);
    assert_int_equal(info.n_audio, 1);
    assert_int_equal(info.n_video, 1);
    assert_int_equal(info.video_index, 1); /* audio first, as Chromium orders getUserMedia tracks */
    assert_int_equal(info.video_codecs, LV_SDP_VP8 | LV_SDP_H264);
    assert_null(info.code);
    assert_string_equal(why, "");
    /* RFC 8866 section 5: lines ending in a bare LF are taken too */
    char *lf = replace_all(offer, "\r\n", "\n");
    assert_int_equal(check(lf, &info, why, sizeof why), 0);
    free(lf);
}

/* The offer of a robot: one H.264 video section, ICE and fingerprint at session level, no audio. */
static void test_minimal_video_offer(void **state)
{
    static const char robot[] = "v=0\r\n"
                                "o=- 1 0 IN IP4 0.0.0.0\r\n"
                                "s=-\r\n"
                                "t=0 0\r\n"
                                "a=ice-ufrag:abcd\r\n"
                                "a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
                                "a=fingerprint:sha-256 00:11:22\r\n"
                                "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
                                "c=IN IP4 0.0.0.0\r\n"
                                "a=mid:video0\r\n"
                                "a=sendonly\r\n"
                                "a=rtpmap:96 H264/90000\r\n";
    lv_sdp_info_t info;
    assert_int_equal(check(robot, &info, NULL, 0), 0);
    assert_int_equal(info.video_index, 0);
    assert_int_equal(info.video_codecs, LV_SDP_H264);
    /* the same without its last CRLF still ends cleanly */
    assert_int_equal(lv_sdp_check(robot, sizeof robot - 3, NULL, &info, NULL, 0), 0);
}

static void test_audio_only(void **state)
{
    /* cut the offer at its m=video line: what is left is audio only */
    char *text = strdup(offer);
    *strstr(text, "m=video") = '\0';
    expect_refused(text, LV_EINVAL, "no_video", "no video");
}

static void test_unsupported_codec(void **state)
{
    /* no VP8 and no H.264 map left: the codecs offered are named (not rtx/red/ulpfec) */
    static const char *const maps[] = {"VP8/90000", "H264/90000", NULL};
    char *text = drop_lines(offer, maps);
    expect_refused(text, LV_EINVAL, "unsupported_codec", "video codecs (AV1, VP9) are not taken: offer VP8 or H.264");
    /* a map for a type the m= line does not list does not count */
    static const char *const h264[] = {"H264/90000", NULL};
    char *no_h264 = drop_lines(offer, h264);
    char *vp8_unlisted = replace_all(no_h264, "a=rtpmap:96 VP8", "a=rtpmap:33 VP8");
    free(no_h264);
    expect_refused(vp8_unlisted, LV_EINVAL, "unsupported_codec", "VP9");
}

static void test_video_not_sent(void **state)
{
    char *recvonly = replace_all(offer, "a=sendrecv", "a=recvonly");
    expect_refused(recvonly, LV_EINVAL, "no_video", "sends VP8 or H.264");
    char *port0 = replace_all(offer, "m=video 58470", "m=video 0");
    expect_refused(port0, LV_EINVAL, "no_video", "a port other than 0");
}

static void test_caps(void **state)
{
    lv_sdp_info_t info;
    char why[256];
    lv_sdp_caps_t caps;
    lv_sdp_caps_default(&caps);
    /* the whole offer */
    char *big = malloc(LV_SDP_MAX_BYTES + 2);
    memcpy(big, offer, offer_len);
    for (size_t i = offer_len; i < LV_SDP_MAX_BYTES + 1; i++)
        big[i] = (i % 64 == 63) ? '\n' : 'x';
    assert_int_equal(lv_sdp_check(big, LV_SDP_MAX_BYTES + 1, &caps, &info, why, sizeof why), LV_ELIMIT);
    assert_string_equal(info.code, "sdp_too_large");
    assert_non_null(strstr(why, "larger than 65536 bytes"));
    free(big);
    /* lines */
    caps.max_lines = 100;
    assert_int_equal(lv_sdp_check(offer, offer_len, &caps, &info, why, sizeof why), LV_ELIMIT);
    assert_non_null(strstr(why, "more than 100 lines"));
    /* one line */
    lv_sdp_caps_default(&caps);
    caps.max_line_bytes = 100;
    assert_int_equal(lv_sdp_check(offer, offer_len, &caps, &info, why, sizeof why), LV_ELIMIT);
    assert_non_null(strstr(why, "longer than 100 bytes"));
    /* payload types on one m= line */
    char pts[400] = "";
    for (int i = 0; i < 65; i++)
        snprintf(pts + strlen(pts), sizeof pts - strlen(pts), " %d", i);
    char mline[450];
    snprintf(mline, sizeof mline, "m=video 58470 UDP/TLS/RTP/SAVPF%s", pts);
    char *line = strstr(offer, "m=video 58470");
    size_t head = (size_t)(line - offer);
    char *many = malloc(offer_len + sizeof mline);
    memcpy(many, offer, head);
    size_t eol = strcspn(line, "\r");
    snprintf(many + head, offer_len + sizeof mline - head, "%s%s", mline, line + eol);
    expect_refused(many, LV_ELIMIT, "sdp_too_large", "more than 64 payload types");
}

static void test_structure(void **state)
{
    expect_refused(replace_all(offer, "v=0\r\n", "v=1\r\n"), LV_EINVAL, "bad_sdp", "line 1: an offer starts with v=0");
    expect_refused(replace_all(offer, "o=- 5608262473550057051 2 IN IP4 127.0.0.1", "o=- 1 2 IN IP4"), LV_EINVAL,
                   "bad_sdp", "line 2: the second line must be o= with six fields");
    expect_refused(replace_all(offer, "s=-\r\n", "x=-\r\n"), LV_EINVAL, "bad_sdp", "the third line must be s=");
    expect_refused(replace_all(offer, "t=0 0\r\n", ""), LV_EINVAL, "bad_sdp", "no t= line before the first m=");
    expect_refused(replace_all(offer, "a=rtcp-mux\r\n", "t=0 0\r\n"), LV_EINVAL, "bad_sdp",
                   "a t= line is not allowed here");
    expect_refused(replace_all(offer, "a=rtcp-mux\r\n", "a=rtcp-mux\r\n\r\n"), LV_EINVAL, "bad_sdp",
                   "not a <type>=<value> line");
    expect_refused(replace_all(offer, "a=rtcp-mux\r\n", "a=rtcp\x01mux\r\n"), LV_EINVAL, "bad_sdp", "control byte");
    expect_refused(replace_all(offer, "a=rtcp-mux\r\n", "a=rtcp\rmux\r\n"), LV_EINVAL, "bad_sdp", "control byte");
    expect_refused(replace_all(offer, "a=mid:1\r\n", ""), LV_EINVAL, "bad_sdp", "1 (m=video) has no a=mid");
    static const char *const fp[] = {"a=fingerprint", NULL};
    expect_refused(drop_lines(offer, fp), LV_EINVAL, "bad_sdp", "no DTLS fingerprint");
    static const char *const ice[] = {"a=ice-pwd", NULL};
    expect_refused(drop_lines(offer, ice), LV_EINVAL, "bad_sdp", "no ICE credentials");
    expect_refused(replace_all(offer, "m=video 58470 UDP/TLS/RTP/SAVPF", "m=video 58470 RTP/AVP"), LV_EINVAL,
                   "unsupported_media", "not WebRTC's DTLS-SRTP");
    expect_refused(replace_all(offer, "m=video 58470", "m=video 65536"), LV_EINVAL, "bad_sdp", "bad port");
    expect_refused(replace_all(offer, "SAVPF 96 97", "SAVPF 96 128"), LV_EINVAL, "bad_sdp", "not 0..127");
    expect_refused(replace_all(offer, "SAVPF 96 97", "SAVPF 96  97"), LV_EINVAL, "bad_sdp", "not 0..127");
    expect_refused(replace_all(offer, "a=rtpmap:96 VP8/90000", "a=rtpmap:96 VP8"), LV_EINVAL, "bad_sdp",
                   "without encoding/clock-rate");
    expect_refused(replace_all(offer, "m=audio", "m=application"), LV_EINVAL, "unsupported_media",
                   "data channels (m=application)");
    expect_refused(replace_all(offer, "m=audio", "m=text"), LV_EINVAL, "unsupported_media", "unsupported media type");
    expect_refused(strdup(""), LV_EINVAL, "bad_sdp", "empty");
    expect_refused(strdup("v=0\r\n"), LV_EINVAL, "bad_sdp", "ends before");
    expect_refused(replace_all(offer, "a=group:BUNDLE", "o=- 1 1 IN IP4 0.0.0.0\r\na=group:BUNDLE"), LV_EINVAL,
                   "bad_sdp", "a second v=, o= or s=");
}

/* Every prefix of the offer, and every single-byte change of its first 2 KB, gives an answer
 * (0 only with a video section), never a crash: the checker reads only inside [0, len). */
static void test_prefixes_and_flips(void **state)
{
    lv_sdp_info_t info;
    char why[256];
    for (size_t n = 0; n <= offer_len; n++) {
        char *copy = malloc(n ? n : 1);
        memcpy(copy, offer, n);
        int rc = lv_sdp_check(copy, n, NULL, &info, why, sizeof why);
        assert_true(rc == 0 || rc == LV_EINVAL);
        if (rc == 0)
            assert_true(info.video_index >= 0);
        else
            assert_non_null(info.code);
        free(copy);
    }
    char *copy = malloc(offer_len);
    for (size_t i = 0; i < 2048 && i < offer_len; i++) {
        memcpy(copy, offer, offer_len);
        copy[i] ^= 0x41;
        int rc = lv_sdp_check(copy, offer_len, NULL, &info, why, sizeof why);
        assert_true(rc == 0 || rc == LV_EINVAL || rc == LV_ELIMIT);
    }
    free(copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chromium_offer),   cmocka_unit_test(test_minimal_video_offer),
        cmocka_unit_test(test_audio_only),       cmocka_unit_test(test_unsupported_codec),
        cmocka_unit_test(test_video_not_sent),   cmocka_unit_test(test_caps),
        cmocka_unit_test(test_structure),        cmocka_unit_test(test_prefixes_and_flips),
    };
    return cmocka_run_group_tests(tests, load_fixture, free_fixture);
}
