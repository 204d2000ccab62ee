/* lv_session.h - live sessions: one person's analysis context, its frame mailbox, credits, history
 * and metrics, and the registry that creates, resumes and expires them. No sockets here: the server
 * attaches viewers and sources (lv_port_viewer.h, lv_port_source.h) and owns the in-flight job. */
#ifndef LV_SESSION_H
#define LV_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_drr.h"
#include "lv_hmap.h"
#include "lv_queue.h"
#include "lv_settings.h"
#include "lv_statefile.h"
#include "lv_store.h"
#include "lv_traceparent.h"

/* A received camera frame. Immutable after creation and refcounted, so the mailbox, a job and a
 * debug view can share it without copies. Freed when the last reference is dropped. */
typedef struct lv_frame {
    int refs;
    uint64_t recv_us;        /* monotonic, when the server received it */
    uint32_t capture_age_ms; /* how old the picture was when the page sent it */
    int width, height;
    uint64_t share_key;      /* nonzero: every frame with this key is the same picture (one camera
                              * sample handed to each session watching it): sessions asking the
                              * same question about it share one inference (lv_pipeline.h) */
    size_t len;
    unsigned char data[];    /* the JPEG */
} lv_frame_t;

/** Copy jpeg into a new frame with one reference; NULL on allocation failure. */
lv_frame_t *lv_frame_new(const void *jpeg, size_t len);
lv_frame_t *lv_frame_ref(lv_frame_t *f);
/** Drop one reference; frees on the last. NULL is ignored. */
void lv_frame_unref(lv_frame_t *f);

#define LV_HISTORY_MAX 20
#define LV_HISTORY_TEXT_MAX 4096

/* The saved form of an entry is cached with it: a busy session is re-encoded about once a second
 * (lv_session_encode) while only its newest entry is new, so each entry is formatted (escaping,
 * %.17g) once and then copied. Memory: json holds the escaped text plus at most 111 bytes of the
 * other fields; plain and UTF-8 text escapes byte for byte (a quote, backslash or newline takes 2),
 * so the cache is about as big as the text again (plus malloc's overhead). An entry whose form
 * would be longer than twice its text plus 128 bytes (control characters take 6 bytes each) is not
 * cached but formatted on each encode, so the cache costs at most 2 * LV_HISTORY_TEXT_MAX + 128 =
 * 8320 bytes per entry (about 163 KiB for a full history of 20 long answers), and nothing for a
 * session never encoded (no state file, no cluster). */
typedef struct {
    uint64_t answer_id;
    uint64_t wall_ms;
    double latency_ms;
    char *text;              /* owned, NUL-terminated, at most LV_HISTORY_TEXT_MAX bytes */
    size_t text_len;         /* strlen(text) (an inner NUL ends it, as it did before), 0 when NULL */
    char *json;              /* owned: the entry as lv_statefile_encode_answer writes it, made by
                              * the first lv_session_encode that sees it; NULL until then or when
                              * not kept (see above). Freed when the ring slot is reused and with
                              * the session. */
    size_t json_len;
} lv_history_entry_t;

typedef struct lv_session {
    lv_session_rec_t rec;        /* durable part; written back to the store on change */
    lv_hmap_node_t hash_node;    /* in the registry's table, keyed by rec.id */
    lv_queue_t viewers;          /* lv_viewer_t.link: who watches (lv_port_viewer.h) */
    size_t n_viewers;
    lv_queue_t sources;          /* lv_source_t.link: who sends frames (lv_port_source.h) */
    size_t n_sources;
    lv_drr_node_t drr;           /* in the fair scheduler while a frame waits (engine-owned) */
    lv_queue_t started_link;     /* in the registry's started list while started */
    lv_frame_t *pending;         /* mailbox: at most one waiting frame, the newest */
    struct lv_job *job;          /* the pipeline's request in flight (lv_port_dispatch.h), NULL when idle */

    /* credits: the server asks for a frame when it wants one */
    uint32_t credit_seq;
    uint32_t credit_outstanding; /* id of the unanswered credit, 0 if none */
    uint64_t credit_sent_ms;
    uint64_t next_credit_ms;     /* monotonic time the next credit is due */
    uint64_t started_order;      /* its place in the started list (larger: nearer the back); the
                                  * pipeline asks due sessions in this order */
    lv_queue_t credit_link;      /* the pipeline's credit timetable while started (lv_pipeline.c);
                                  * the registry puts a session that starts on its just-started
                                  * list and unlinks one that stops or goes */
    uint64_t credit_wake_ms;     /* when the timetable looks at it next (the pipeline's) */
    uint64_t no_backend_ms;      /* no backend serves its model: when its viewers were last told
                                  * (credits are held meanwhile); 0 while it is served */
    uint64_t refused_ms;         /* its tenant no longer allows its model or backend: when its
                                  * viewers were told (the server's; credits are held meanwhile);
                                  * 0 while allowed */

    uint64_t answer_seq;
    lv_trace_t trace;            /* W3C trace its backend requests carry: a new trace id when made,
                                  * or the one a connection or request brought (not saved) */
    uint64_t last_stats_ms;
    uint64_t detached_since_ms;  /* monotonic; 0 while a connection is attached */
    lv_queue_t principal_link;       /* in its principal's list (registry-private), oldest first */

    /* metrics */
    uint64_t frames_received, frames_replaced, frames_rejected, frames_stale, errors;
    double last_latency_ms;

    lv_history_entry_t history[LV_HISTORY_MAX];
    size_t history_len, history_head; /* ring: oldest at head */

    /* its saved form (the state file's lv_registry_snapshot, the cluster's records in Redis):
     * re-encoded when dirty */
    bool persist_dirty;
    lv_queue_t dirty_link;       /* in the registry's dirty list while persist_dirty (lv_registry_dirty_pop) */
    lv_statefile_line_t *persist_line;
    uint64_t detached_wall_ms;   /* wall clock when its last socket left: "last seen" in the file */
    struct lv_registry *reg;     /* the registry it is in (set when it is registered) */

    /* cluster mode: src/server/lv_cluster_sessions.c owns these (the registry only takes `link` off
     * its list when it removes the session) */
    struct {
        bool managed;            /* its record lives in Redis: a page's session, not a one-request one */
        uint32_t gen;            /* this incarnation here: a reply for an earlier one is ignored */
        lv_queue_t link;         /* in the write-behind's queue, the longest unwritten first */
        uint64_t written_ms;     /* monotonic: when its last write was sent */
    } cluster;
} lv_session_t;

/* Caps. max_sessions bounds memory: every session counts, with or without a socket.
 * max_sessions_per_principal counts a principal's LIVE sessions (a socket attached, or just created and
 * not yet attached); its detached ones are kept only while the principal has room: when live +
 * detached would pass the cap, or the total is reached, creating a session evicts that principal's
 * longest-detached one instead of refusing. So reloading a page never locks a person out, and a
 * resumed session is one session however many sockets it has. */
typedef struct {
    size_t max_sessions;
    size_t max_sessions_per_principal;
} lv_registry_caps_t;

typedef struct lv_registry lv_registry_t;

/** Create a registry over a store (not owned). */
int lv_registry_create(lv_store_t *store, const lv_registry_caps_t *caps, lv_registry_t **out);
/** Free every session (history, pending frames) and the registry. Jobs must be gone already. */
void lv_registry_destroy(lv_registry_t *reg);

/** What runs just before the registry frees a session itself (an eviction in lv_session_create):
 * the engine cancels its job and takes it out of the scheduler, as for lv_registry_sweep. */
void lv_registry_set_evict_cb(lv_registry_t *reg, void (*before_evict)(lv_session_t *s, void *ud), void *ud);

/** New session owned by `principal` (its key: "u:<user id>" or a client address) charged to
 * `tenant` (NULL or "" = "default"; longer than an id is cut), with settings (NULL = defaults).
 * Writes the resume secret (64 hex + NUL) to secret_out; it is not kept anywhere in clear.
 * May evict the principal's longest-detached session to make room (see lv_registry_caps_t).
 * LV_ELIMIT when the principal has max_sessions_per_principal live sessions, or the total is reached and
 * the principal has no detached session to give up. */
int lv_session_create(lv_registry_t *reg, const char *principal, const char *tenant,
                      const lv_settings_t *settings, char secret_out[65], lv_session_t **out);
/** Find a session by id and check its secret (constant time). LV_ENOTFOUND for a wrong id or secret
 * (the same answer for both, so ids cannot be probed). */
int lv_session_resume(lv_registry_t *reg, const char *id, const char *secret, lv_session_t **out);
/** Look up by id without a secret (internal use). */
lv_session_t *lv_session_find(lv_registry_t *reg, const char *id);
/** Write the durable part back to the store (after settings or metrics change). */
int lv_session_save(lv_registry_t *reg, lv_session_t *s);

/** Mark started/stopped; keeps the started list, and puts a session that starts on the
 * just-started list for the pipeline's credit timetable (one that stops leaves the timetable). */
void lv_session_set_started(lv_registry_t *reg, lv_session_t *s, bool started, uint64_t now_ms);
/** Head of the started list (lv_session_t.started_link entries), in started_order. */
lv_queue_t *lv_registry_started(lv_registry_t *reg);
/** s (started) moves to the back of the started list with the next started_order (it got a
 * credit: the others due are asked before it next time). */
void lv_registry_started_to_back(lv_registry_t *reg, lv_session_t *s);
/** Sessions that started since the pipeline last took them (lv_session_t.credit_link entries):
 * the pipeline files them in its credit timetable. */
lv_queue_t *lv_registry_just_started(lv_registry_t *reg);

/** Put a frame in the mailbox (takes the caller's reference). Returns 1 if it replaced a waiting
 * frame (counted in frames_replaced), 0 otherwise. */
int lv_session_mailbox_put(lv_session_t *s, lv_frame_t *f);
/** Take the waiting frame (caller owns the reference) or NULL. */
lv_frame_t *lv_session_mailbox_take(lv_session_t *s);

/** Append an answer to the bounded history (text is copied, cut at LV_HISTORY_TEXT_MAX). */
void lv_session_history_add(lv_session_t *s, uint64_t answer_id, const char *text, size_t len,
                            double latency_ms, uint64_t wall_ms);
/** i-th history entry, oldest first (i < history_len). */
const lv_history_entry_t *lv_session_history_at(const lv_session_t *s, size_t i);

/** A session is attached while it has a viewer or a source: only a detached one idles and expires. */
static inline bool lv_session_attached(const lv_session_t *s) { return s->n_viewers + s->n_sources > 0; }

/** Note that the last viewer or source left (starts the idle clock) or one arrived. */
void lv_session_attach_changed(lv_session_t *s, uint64_t now_ms);

/** Remove sessions with no connection for idle_ms. before_free runs for each one just before it is
 * freed: the engine uses it to cancel the job and take the session out of its scheduler. Returns how many were removed. Bounded:
 * examines at most max_examined sessions per call, resuming where the last call stopped. */
size_t lv_registry_sweep(lv_registry_t *reg, uint64_t now_ms, uint64_t idle_ms, size_t max_examined,
                         void (*before_free)(lv_session_t *s, void *ud), void *ud);
/** Remove and free s now: a session made for one request (POST /api/v1/analyze) whose answer is
 * out. The caller has released it from the pipeline (lv_pipeline_release) and detached every
 * viewer and source first. */
void lv_registry_remove(lv_registry_t *reg, lv_session_t *s);
/** Number of live sessions. */
size_t lv_registry_count(const lv_registry_t *reg);
/** Call fn for each session (principal by principal in order of arrival, each one's oldest
 * first) until fn returns non-zero. fn must not add or remove sessions: it is for listings (the
 * admin's GET /api/v1/admin/sessions), O(sessions). */
void lv_registry_each(lv_registry_t *reg, int (*fn)(lv_session_t *s, void *ud), void *ud);

/** Recreate a session an earlier run saved (lv_statefile_parse): same id, secret hash, principal,
 * settings, started state, history and answer numbering, no socket, its idle clock already
 * saved->age_ms old, so the page resumes it with the secret it kept and it expires on time.
 * LV_EEXIST for an id already here, LV_ELIMIT past max_sessions (the per-principal cap is not applied:
 * these sessions were within it when made, and detached ones give way to new ones anyway). */
int lv_registry_restore(lv_registry_t *reg, const lv_statefile_session_t *saved, uint64_t now_ms);

/** The saved form of every session, for the state file (loop thread). Sessions changed since the
 * last call are re-encoded first, at most encode_budget_bytes of lines per call, resuming where the
 * last call stopped (the others keep their previous line until a later call; one never encoded is
 * left out). out (empty on entry) then gets a reference to each session's line, up to max_bytes in
 * all (the rest are counted in out->skipped). LV_EAGAIN, out empty, when nothing changed and
 * nothing was removed since the last call and force is false; LV_ENOMEM. */
int lv_registry_snapshot(lv_registry_t *reg, bool force, size_t encode_budget_bytes, size_t max_bytes,
                         lv_statefile_snap_t *out);
/** Mark s changed: its saved form is re-encoded at the next write (persist_dirty), and it goes on
 * the registry's dirty list if it is not on it. Every change the registry makes itself (history,
 * start/stop, attach/detach, lv_session_save) does this. */
void lv_session_mark_dirty(lv_session_t *s);
/** Put s on the dirty list without marking it changed: its saved line is current and only has to
 * be written again (a TTL refresh, a failed write, a store that came back); the next write sends
 * it as it is (encoding it only if it never was). */
void lv_session_queue_write(lv_session_t *s);
/** The session that changed longest ago and is still on the dirty list, taken off it, or NULL.
 * Its persist_dirty stays set until lv_session_encode; one the caller cannot write now goes back
 * with lv_session_queue_write (its persist_dirty kept). The cluster's write-behind walks changes with it, so a tick costs
 * O(changed sessions), not O(all). */
lv_session_t *lv_registry_dirty_pop(lv_registry_t *reg);
/** Re-encode s's saved form into s->persist_line now (clears persist_dirty, takes s off the dirty
 * list), copying the history entries' cached forms and caching those of new entries. 0, or the
 * encoder's error: the previous line (maybe NULL) stays and s waits for its next change. */
int lv_session_encode(lv_session_t *s);

/** Number of sessions (live and detached) created by principal. */
size_t lv_registry_principal_count(const lv_registry_t *reg, const char *principal);
/** Adjust (delta -1, 0, +1) the count of frames waiting plus credits outstanding of principal's
 * sessions; returns the new count (the pipeline's pacing reads it). */
size_t lv_registry_principal_queued(lv_registry_t *reg, const char *principal, int delta);
/** Number of principal's live sessions: a socket attached, or created and not yet attached. */
size_t lv_registry_principal_live(const lv_registry_t *reg, const char *principal);

#endif
