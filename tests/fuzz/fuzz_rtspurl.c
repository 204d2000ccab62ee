/* fuzz_rtspurl.c - libFuzzer driver for camera definitions and the credential scrubber. The
 * input's first line is a definition "ID=URL"; the rest is the text to scrub (in production
 * GStreamer and the camera choose that text). Checks: parse results obey the caps and never let
 * userinfo into url_clean; a parsed url_clean parses again to itself; the scrubbed text never
 * holds the password (decoded or as written) and fits its buffer.
 * fuzz-sources: src/proto/lv_rtspurl.c src/common/lv_common.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_rtspurl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lv_camera_def_t def, again;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t dlen = nl ? (size_t)(nl - data) : size;
    /* exact-size copies: a read past either part is caught by ASan */
    char *d = malloc(dlen ? dlen : 1);
    size_t tlen = nl ? size - dlen - 1 : 0;
    char *t = malloc(tlen + 1);
    if (!d || !t)
        goto out;
    memcpy(d, data, dlen);
    memcpy(t, nl ? nl + 1 : data, tlen);
    t[tlen] = '\0';

    const char *why = NULL;
    int rc = lv_camera_def_parse_n(d, dlen, &def, &why);
    if (rc != 0 && rc != LV_EINVAL && rc != LV_ELIMIT)
        abort();
    if (rc != 0) {
        if (!why || def.password[0] || def.url_clean[0])
            abort();
        goto out;
    }
    if (strlen(def.id) == 0 || !lv_camera_id_valid(def.id, strlen(def.id)) || def.port == 0 ||
        def.path[0] != '/' || strlen(def.user) > LV_RTSPURL_USER_MAX ||
        strlen(def.password) > LV_RTSPURL_PASS_MAX)
        abort();
    /* url_clean has no userinfo: its authority holds no '@' */
    const char *auth = strstr(def.url_clean, "://");
    if (!auth)
        abort();
    auth += 3;
    if (memchr(auth, '@', strcspn(auth, "/")))
        abort();
    /* url_clean is a fixed point */
    if (lv_rtspurl_parse(def.url_clean, strlen(def.url_clean), &again, &why) != 0 ||
        strcmp(again.url_clean, def.url_clean) != 0 || again.has_userinfo)
        abort();

    char out[256];
    int src = lv_rtspurl_scrub(t, &def, out, sizeof(out));
    if (src != 0 && src != LV_ELIMIT)
        abort();
    if (strlen(out) >= sizeof(out))
        abort();
    /* (a password holding '*' may be spelled anew by a "***" beside text bytes: not a leak) */
    if (def.password[0] && !strchr(def.password, '*') && strstr(out, def.password))
        abort();
    const char *rawp = strchr(def.userinfo_raw, ':');
    if (rawp && rawp[1] && !strchr(rawp, '*') && strstr(out, rawp + 1))
        abort();
    /* the text itself, scrubbed with room to spare, is never cut */
    static char big[8192];
    if (tlen * 3 < sizeof(big) && lv_rtspurl_scrub(t, &def, big, sizeof(big)) != 0)
        abort();
out:
    lv_camera_def_wipe(&def);
    free(d);
    free(t);
    return 0;
}
