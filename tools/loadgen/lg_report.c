/* lg_report.c - the load generator's results: a human summary on stdout and the same numbers as
 * JSON (--out). Field meanings are in docs/loadgen.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <jansson.h>

#include "lg.h"
#include "lv_common.h"

static json_t *dist_json(lg_samples_t *s)
{
    if (!s->seen)
        return json_pack("{s:I}", "n", (json_int_t)0);
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "n", (json_int_t)s->seen, "p50",
                     lg_samples_pct(s, 50), "p90", lg_samples_pct(s, 90), "p99", lg_samples_pct(s, 99), "max",
                     s->maxv, "mean", lg_samples_mean(s), "min", lg_samples_pct(s, 0));
}

static json_t *counters_json(const lg_counters_t *c)
{
    json_t *o = json_object();
    for (size_t i = 0; i < c->n; i++)
        json_object_set_new(o, c->name[i], json_integer((json_int_t)c->count[i]));
    return o;
}

static void print_dist(const char *label, lg_samples_t *s)
{
    if (!s->seen) {
        printf("  %-30s %8s\n", label, "-");
        return;
    }
    printf("  %-30s %8.1f %8.1f %8.1f %8.1f %8.1f %8llu\n", label, lg_samples_pct(s, 50), lg_samples_pct(s, 90),
           lg_samples_pct(s, 99), s->maxv, lg_samples_mean(s), (unsigned long long)s->seen);
}

static void print_counters(const char *label, const lg_counters_t *c)
{
    printf("%-12s", label);
    if (!c->n) {
        printf("none\n");
        return;
    }
    for (size_t i = 0; i < c->n; i++)
        printf("%s%s %llu", i ? ", " : "", c->name[i], (unsigned long long)c->count[i]);
    printf("\n");
}

int lg_report(lg_run_t *r)
{
    const lg_opts_t *o = r->o;
    uint64_t end_us = r->measure_end_us ? r->measure_end_us : lv_now_us();
    double window_s = r->measure_start_us && end_us > r->measure_start_us
                          ? (double)(end_us - r->measure_start_us) / 1e6
                          : 0;
    double fps = window_s > 0 ? (double)r->w_frames / window_s : 0;
    double aps = window_s > 0 ? (double)r->w_answers / window_s : 0;
    double expected = o->push_fps > 0 ? -1 : (double)r->n_connected * window_s * 1000.0 / o->interval_ms;
    double cpu_s = (double)r->w_cpu_us / 1e6;
    double us_per_frame = r->w_frames ? (double)r->w_cpu_us / (double)r->w_frames : 0;
    double cpu_total_s = (double)lg_cpu_us(NULL) / 1e6;
    double sys_s = (double)r->w_sys_us / 1e6;
    double msgs_per_frame = r->w_frames ? (double)r->w_msgs_in / (double)r->w_frames : 0;
    struct rusage ru;
    long max_rss_kb = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;

    /* fairness */
    uint64_t *ua = calloc(o->users, sizeof(*ua));
    uint64_t *sa = calloc(o->sessions, sizeof(*sa));
    double share_min = 0, share_max = 0, jain_users = -1, jain_sessions = -1;
    if (ua && sa) {
        for (uint32_t u = 0; u < o->users; u++)
            ua[u] = r->users[u].w_answers;
        uint32_t ns = 0;
        for (uint32_t i = 0; i < o->sessions; i++) {
            if (r->sess[i].connected)
                sa[ns++] = r->sess[i].w_answers;
        }
        jain_users = lg_jain(ua, o->users);
        jain_sessions = lg_jain(sa, ns);
        if (r->w_answers) {
            share_min = 1, share_max = 0;
            for (uint32_t u = 0; u < o->users; u++) {
                double sh = (double)ua[u] / (double)r->w_answers;
                share_min = LV_MIN(share_min, sh);
                share_max = LV_MAX(share_max, sh);
            }
        }
    }

    /* ---- human summary ---- */
    printf("livevlm loadgen: %s  %u sessions, %u users", o->url, o->sessions, o->users);
    if (o->heavy_users)
        printf(" (first %u x%u)", o->heavy_users, o->heavy_factor);
    if (o->bind_src)
        printf(", %u per source address", o->per_ip);
    if (o->push_fps > 0)
        printf(", push %.2f fps\n", o->push_fps);
    else
        printf(", credit mode, interval %d ms\n", o->interval_ms);
    printf("window:     %.1f s measured after %.1f s ramp + %.1f s warmup", window_s, o->ramp_s, o->warmup_s);
    if (o->coalesce_us > 0)
        printf("; client times may be up to %.1f ms late (--coalesce-us)", o->coalesce_us / 1000.0);
    printf("\n");
    printf("sessions:   %u connected, %u failed, %llu lost after connecting", r->n_connected, r->n_failed,
           (unsigned long long)r->lost_after_ready);
    if (r->connect_ms.seen)
        printf("  (connect p50 %.1f ms, p99 %.1f ms, max %.1f ms)", lg_samples_pct(&r->connect_ms, 50),
               lg_samples_pct(&r->connect_ms, 99), r->connect_ms.maxv);
    printf("\n");
    if (r->fail_reasons.n)
        print_counters("  failed:", &r->fail_reasons);
    if (r->lost_reasons.n)
        print_counters("  lost:", &r->lost_reasons);
    printf("frames:     %llu sent (%.1f/s)", (unsigned long long)r->w_frames, fps);
    if (r->frames_skipped)
        printf(", %llu skipped (socket backlog)", (unsigned long long)r->frames_skipped);
    if (r->frames_unanswered || r->srv_replaced)
        printf("; whole run: %llu never answered, server says %llu replaced", (unsigned long long)r->frames_unanswered,
               (unsigned long long)r->srv_replaced);
    printf("\n");
    printf("answers:    %llu (%.1f/s", (unsigned long long)r->w_answers, aps);
    if (expected >= 0)
        printf("; expected ~%.0f = connected x window / interval", expected);
    printf("), %llu deltas\n", (unsigned long long)r->w_deltas);
    if (r->answers_checked)
        printf("checked:    %llu answers (whole run) named the prompt hash, %llu named another session's\n",
               (unsigned long long)(r->answers_checked - r->answers_mismatched),
               (unsigned long long)r->answers_mismatched);
    print_counters("errors:", &r->errors);
    if (r->close_codes.n)
        print_counters("closes:", &r->close_codes);
    printf("latency ms                         p50      p90      p99      max     mean        n\n");
    print_dist("client: frame -> vlm_response", &r->lat_total);
    print_dist("client: frame -> first delta", &r->lat_ttft);
    print_dist("server queue_wait_ms", &r->srv_queue);
    print_dist("server frame_age_ms", &r->srv_age);
    print_dist("server ttft_ms", &r->srv_ttft);
    print_dist("server last_latency_ms", &r->srv_latency);
    if (o->ping_ms > 0)
        print_dist("client: ping -> pong", &r->ping_rtt);
    printf("users:      answer share min %.1f%% max %.1f%%, Jain %s", share_min * 100, share_max * 100,
           jain_users < 0 ? "n/a" : "");
    if (jain_users >= 0)
        printf("%.3f", jain_users);
    printf(" (over sessions: ");
    if (jain_sessions >= 0)
        printf("%.3f)\n", jain_sessions);
    else
        printf("n/a)\n");
    if (o->users > 1 && o->users <= 16) {
        for (uint32_t u = 0; u < o->users; u++)
            printf("  user %-3u %5u sessions %8llu frames %8llu answers %6llu errors\n", u, r->users[u].sessions,
                   (unsigned long long)r->users[u].w_frames, (unsigned long long)r->users[u].w_answers,
                   (unsigned long long)r->users[u].w_errors);
    }
    printf("loadgen:    %.2f s CPU in window (%.1f%% of one core; %.2f s of it system), %.1f us per frame\n"
           "            (%.1f messages received per frame sent); %.2f s CPU in all; loop lag p50 %.1f ms,\n"
           "            p99 %.1f ms, max %.1f ms; max RSS %.1f MiB\n",
           cpu_s, window_s > 0 ? 100.0 * cpu_s / window_s : 0, sys_s, us_per_frame, msgs_per_frame, cpu_total_s,
           lg_samples_pct(&r->loop_lag, 50), lg_samples_pct(&r->loop_lag, 99), r->loop_lag.maxv,
           (double)max_rss_kb / 1024.0);
    if (r->msgs_unknown || r->binary_msgs)
        printf("other:      %llu unrecognised text messages, %llu binary messages\n",
               (unsigned long long)r->msgs_unknown, (unsigned long long)r->binary_msgs);
    fflush(stdout);

    /* ---- JSON ---- */
    int rc = 0;
    if (o->out_path) {
        json_t *cfg = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:f, s:f, s:f, s:f, s:I}",
                                "url", o->url, "tls", o->tls, "sessions", (json_int_t)o->sessions, "users",
                                (json_int_t)o->users, "heavy_users", (json_int_t)o->heavy_users, "heavy_factor",
                                (json_int_t)o->heavy_factor, "per_ip", (json_int_t)o->per_ip, "interval_ms",
                                (json_int_t)o->interval_ms, "prompt", o->prompt, "max_tokens",
                                (json_int_t)o->max_tokens, "push_fps", o->push_fps, "ramp_s", o->ramp_s,
                                "warmup_s", o->warmup_s, "duration_s", o->duration_s, "seed", (json_int_t)o->seed);
        json_t *jp = json_array();
        for (size_t i = 0; i < o->n_jpegs; i++)
            json_array_append_new(jp, json_pack("{s:s, s:I}", "file", o->jpeg_paths[i], "bytes",
                                                (json_int_t)r->jpegs[i].len));
        json_object_set_new(cfg, "jpeg", jp);
        json_object_set_new(cfg, "model", o->model ? json_string(o->model) : json_null());
        json_object_set_new(cfg, "backend", o->backend ? json_string(o->backend) : json_null());
        json_object_set_new(cfg, "source_addresses", json_boolean(o->bind_src));
        json_object_set_new(cfg, "ping_ms", json_integer(o->ping_ms));
        json_object_set_new(cfg, "coalesce_us", json_integer(o->coalesce_us));
        json_object_set_new(cfg, "stats_interval_ms", json_integer(o->stats_interval_ms));

        json_t *per_user = json_array();
        for (uint32_t u = 0; u < o->users; u++)
            json_array_append_new(per_user,
                                  json_pack("{s:I, s:I, s:I, s:I, s:I}", "user", (json_int_t)u, "sessions",
                                            (json_int_t)r->users[u].sessions, "frames",
                                            (json_int_t)r->users[u].w_frames, "answers",
                                            (json_int_t)r->users[u].w_answers, "errors",
                                            (json_int_t)r->users[u].w_errors));
        json_t *root = json_object();
        json_object_set_new(root, "config", cfg);
        json_object_set_new(root, "window_s", json_real(window_s));
        json_object_set_new(root, "sessions",
                            json_pack("{s:I, s:I, s:I, s:o, s:o, s:o}", "connected", (json_int_t)r->n_connected,
                                      "failed", (json_int_t)r->n_failed, "lost_after_connect",
                                      (json_int_t)r->lost_after_ready, "failed_by_reason",
                                      counters_json(&r->fail_reasons), "lost_by_reason",
                                      counters_json(&r->lost_reasons), "connect_ms", dist_json(&r->connect_ms)));
        json_object_set_new(root, "frames_sent", json_integer((json_int_t)r->w_frames));
        json_object_set_new(root, "frames_per_s", json_real(fps));
        json_object_set_new(root, "frames_skipped", json_integer((json_int_t)r->frames_skipped));
        json_object_set_new(root, "answers", json_integer((json_int_t)r->w_answers));
        json_object_set_new(root, "answers_per_s", json_real(aps));
        json_object_set_new(root, "answers_expected", expected >= 0 ? json_real(expected) : json_null());
        json_object_set_new(root, "deltas", json_integer((json_int_t)r->w_deltas));
        json_object_set_new(root, "errors_in_window", json_integer((json_int_t)r->w_errors));
        json_object_set_new(root, "errors", counters_json(&r->errors));
        json_object_set_new(root, "close_codes", counters_json(&r->close_codes));
        json_object_set_new(root, "answer_check",
                            json_pack("{s:I, s:I}", "checked", (json_int_t)r->answers_checked, "mismatched",
                                      (json_int_t)r->answers_mismatched));
        json_object_set_new(root, "latency_ms",
                            json_pack("{s:o, s:o, s:o}", "total", dist_json(&r->lat_total), "ttft",
                                      dist_json(&r->lat_ttft), "ping_rtt", dist_json(&r->ping_rtt)));
        json_object_set_new(root, "server_ms",
                            json_pack("{s:o, s:o, s:o, s:o}", "queue_wait", dist_json(&r->srv_queue),
                                      "frame_age", dist_json(&r->srv_age), "ttft", dist_json(&r->srv_ttft),
                                      "latency", dist_json(&r->srv_latency)));
        json_t *users = json_object();
        json_object_set_new(users, "count", json_integer(o->users));
        json_object_set_new(users, "jain", jain_users >= 0 ? json_real(jain_users) : json_null());
        json_object_set_new(users, "jain_sessions", jain_sessions >= 0 ? json_real(jain_sessions) : json_null());
        json_object_set_new(users, "share_min", json_real(share_min));
        json_object_set_new(users, "share_max", json_real(share_max));
        json_object_set_new(users, "per_user", per_user);
        json_object_set_new(root, "users", users);
        json_object_set_new(root, "totals",
                            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "frames",
                                      (json_int_t)r->frames_total, "answers", (json_int_t)r->answers_total,
                                      "frames_unanswered", (json_int_t)r->frames_unanswered, "server_frames_replaced",
                                      (json_int_t)r->srv_replaced, "attribution_fallbacks",
                                      (json_int_t)r->attrib_fallbacks, "deltas",
                                      (json_int_t)r->deltas_total, "answer_errors", (json_int_t)r->answer_errors,
                                      "credits_ignored", (json_int_t)r->credits_ignored, "unknown_messages",
                                      (json_int_t)r->msgs_unknown, "binary_messages", (json_int_t)r->binary_msgs));
        json_t *lg = json_object();
        json_object_set_new(lg, "cpu_s", json_real(cpu_s));
        json_object_set_new(lg, "cpu_sys_s", json_real(sys_s));
        json_object_set_new(lg, "messages_in", json_integer((json_int_t)r->w_msgs_in));
        json_object_set_new(lg, "messages_per_frame", json_real(msgs_per_frame));
        json_object_set_new(lg, "frame_bytes_out", json_integer((json_int_t)r->w_bytes_out));
        json_object_set_new(lg, "cpu_percent", json_real(window_s > 0 ? 100.0 * cpu_s / window_s : 0));
        json_object_set_new(lg, "us_per_frame", json_real(us_per_frame));
        json_object_set_new(lg, "cpu_total_s", json_real(cpu_total_s));
        json_object_set_new(lg, "loop_lag_ms", dist_json(&r->loop_lag));
        json_object_set_new(lg, "max_rss_kb", json_integer(max_rss_kb));
        json_object_set_new(root, "loadgen", lg);
        if (json_dump_file(root, o->out_path, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) != 0) {
            fprintf(stderr, "loadgen: cannot write %s\n", o->out_path);
            rc = LV_EIO;
        }
        json_decref(root);
    }
    free(ua);
    free(sa);
    return rc;
}
