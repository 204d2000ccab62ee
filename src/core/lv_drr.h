/* lv_drr.h - the fair ready queue, two levels: deficit round-robin across tenants (by tenant
 * weight), within a tenant's turn deficit round-robin across its users (by user weight), and
 * round-robin across one user's sessions, with a per-node max age. See
 * docs/internals/scheduler.md ("Tenants"). Pure: no sockets, no clocks (time is passed in), one
 * thread.
 *
 * Usage: the caller embeds an lv_drr_node_t in each schedulable object (a session), enqueues it
 * under a tenant and a user key when it has work, and calls lv_drr_run() when backend slots may be
 * free. A dispatch costs one job of the user's turn and one of its tenant's; each turn a tenant may
 * dispatch quantum × tenant weight jobs, a user quantum × user weight. A user belongs to one tenant
 * while the scheduler knows it (see lv_drr_enqueue_tenant). With job tracking (lv_drr_track_jobs)
 * it also bounds a tenant's jobs in flight to its share among the tenants, and a user's to its
 * share within its tenant, while others wait. */
#ifndef LV_DRR_H
#define LV_DRR_H

#include <stddef.h>
#include <stdint.h>

#include "lv_hmap.h"
#include "lv_queue.h"

#define LV_DRR_USER_MAX_LEN 63      /* user keys are 1..63 bytes, NUL-terminated */
#define LV_DRR_WEIGHT_MAX 1000      /* weights are 1..1000; 1 is the default */
#define LV_DRR_QUANTUM_MAX 1000     /* quantum (jobs per turn at weight 1) is 1..1000 */
#define LV_DRR_MAX_WEIGHTS 4096     /* entries in each weights table (users, tenants with weight != 1) */
#define LV_DRR_TENANT_DEFAULT "default" /* the tenant of lv_drr_enqueue (no accounts) */

struct lv_drr_user;   /* private: one per user that has queued nodes */
struct lv_drr_tenant; /* private: one per tenant with a known user (kept a while after) */

/** The link a schedulable object embeds. All-zero (e.g. from calloc) is a valid detached node, as
 * is one passed to lv_drr_node_init(). The caller owns the memory; it must stay valid while the
 * node is queued (lv_drr_remove() it before freeing the owner). */
typedef struct lv_drr_node {
    uint64_t enqueued_us; /* set by lv_drr_enqueue() (the caller's clock, e.g. lv_now_us()); the
                           * caller may move it forward while queued, e.g. to the receive time of
                           * a newer frame that replaced the waiting one. Only the age check
                           * reads it. */
    uint64_t max_age_us;  /* set by the caller; 0 = no limit. A node older than this when its turn
                           * comes goes to on_stale instead of being dispatched. */
    /* private to lv_drr */
    lv_queue_t link;          /* in its user's ring while queued */
    struct lv_drr_user *user; /* NULL while detached */
} lv_drr_node_t;

/** The scheduler. Embedded by its owner; fields are private. One thread only. */
typedef struct lv_drr {
    lv_queue_t active;            /* lv_drr_tenant.active_link: tenants with queued nodes, the round
                                   * order; head's turn is next */
    lv_queue_t idle;              /* lv_drr_user.idle_link: users with nothing queued or in flight
                                   * that still count as competing until their linger ends (sorted
                                   * by that time) */
    lv_hmap_t users;              /* lv_drr_user by key: the known users (queued, in flight,
                                   * lingering) and the cached records, under their last key */
    lv_queue_t cache;             /* lv_drr_user.cache_link: idle user records kept for reuse,
                                   * oldest first */
    size_t n_cached;
    size_t peak_cur, peak_prev;   /* most users queued at once in this / the last cache window */
    uint64_t peak_start_us;       /* when this cache window began (caller's clock) */
    lv_hmap_t weights;            /* lv_drr_weight by key: user keys whose weight is not 1 */
    lv_hmap_t tweights;           /* lv_drr_weight by key: tenants whose weight is not 1 */
    lv_hmap_t tenants;            /* lv_drr_tenant by key: known tenants and a few idle ones */
    size_t n_tenants_active;      /* tenants with queued nodes (in `active`) */
    size_t n_tenants_known;       /* tenants with a known user */
    size_t n_users;               /* users with queued nodes */
    size_t n_queued;              /* nodes queued */
    uint64_t run_seq;             /* counts lv_drr_run() calls; marks per-run cursors */
    uint64_t allocs;              /* allocations made so far (see lv_drr_stats) */
    int quantum;
    int running;                  /* inside lv_drr_run(): re-entry is refused */
    /* jobs in flight and the share bound (lv_drr_track_jobs, lv_drr_set_capacity) */
    int track_jobs;
    size_t n_known;               /* user records in the hash: queued, in flight or lingering */
    size_t n_idle;                /* of which lingering (in `idle`) */
    uint64_t weight_known;        /* sum of the weights of known tenants */
    size_t inflight;              /* jobs dispatched and not yet reported done */
    size_t capacity;              /* slots the jobs share; 0 = no share bound */
    uint64_t clock_us;            /* the latest now_us the caller passed */
    uint64_t held_back;           /* offers withheld by the share bound (stats) */
    size_t starved;               /* in the last run: BUSY offers to users below their share */
    lv_drr_node_t *starved_node;  /* the first of them, while it stays queued */
} lv_drr_t;

/** What the dispatcher says about one node offered by lv_drr_run(). */
typedef enum {
    LV_DRR_DISPATCHED, /* it took the job: the node leaves the queue; costs the user one job */
    LV_DRR_BUSY,       /* no slot for this node's backend now: it keeps its place (it is first in
                        * its user's line, and its user keeps its turn) and others are tried */
    LV_DRR_DROP,       /* it cannot be served (the caller reported why): the node leaves the queue,
                        * at no cost to the user */
    LV_DRR_STOP,       /* no slot anywhere: keep this node's place like BUSY and end the run now */
} lv_drr_verdict_t;

/** Offered a node in lv_drr_run(). The node is still queued during the call (so
 * lv_drr_node_user() works) and is removed right after it returns DISPATCHED or DROP. It must not
 * free the node nor call any lv_drr_* function that changes this scheduler. */
typedef lv_drr_verdict_t (*lv_drr_try_fn)(lv_drr_node_t *node, void *ud);
/** Given a node that was too old when its turn came. The node has already been removed (detached)
 * and is never touched by lv_drr again in this run, so the callback may free its owner; it must
 * not call any lv_drr_* function that changes this scheduler. */
typedef void (*lv_drr_stale_fn)(lv_drr_node_t *node, void *ud);

typedef struct {
    size_t queued;       /* nodes queued */
    size_t users_active; /* users with at least one queued node */
    size_t tenants_active; /* tenants with at least one queued node */
    size_t tenants_known;  /* tenants with a user queued, in flight or lingering */
    size_t users_cached; /* idle user records kept for reuse */
    size_t weights;      /* entries in the weights table */
    uint64_t allocs;     /* heap allocations made by this scheduler since init (user records,
                          * hash tables, weight entries); steady state makes none */
    size_t users_known;  /* users queued, with jobs in flight, or lingering (lv_drr_track_jobs) */
    size_t users_idle;   /* of which lingering: nothing queued or in flight */
    size_t inflight;     /* jobs in flight (lv_drr_track_jobs) */
    uint64_t held_back;  /* offers withheld because their user was over its share */
} lv_drr_stats_t;

/** Make a node detached (same as zeroing it). Never call it on a queued node. */
void lv_drr_node_init(lv_drr_node_t *node);
/** 1 while the node is queued, else 0. */
static inline int lv_drr_node_queued(const lv_drr_node_t *node) { return node->user != NULL; }
/** The user key a queued node was enqueued under (valid while it stays queued), or NULL. */
const char *lv_drr_node_user(const lv_drr_node_t *node);
/** The tenant of a queued node's user (valid while it stays queued), or NULL. */
const char *lv_drr_node_tenant(const lv_drr_node_t *node);

/** Initialise an empty scheduler. quantum: jobs per turn at weight 1, 1..LV_DRR_QUANTUM_MAX
 * (1 gives the finest interleaving; a user of weight w dispatches up to quantum × w jobs in a
 * row). LV_EINVAL, LV_EIO (no random bytes for the tables' hash keys). Allocates nothing, so on
 * failure nothing needs freeing. */
int lv_drr_init(lv_drr_t *d, int quantum);
/** Free everything the scheduler allocated. Queued nodes are detached (their owners are not
 * touched otherwise), so call it after the owners are gone or before they are freed. */
void lv_drr_free(lv_drr_t *d);

/** Set a user's weight (its share within its tenant), 1..LV_DRR_WEIGHT_MAX; works before the user
 * has ever queued anything and is kept while the user is idle. Weight 1 removes the entry. A user
 * in the middle of its turn gets the new weight from its next turn. user: 1..63 bytes, copied. LV_EINVAL, LV_ELIMIT (more
 * than LV_DRR_MAX_WEIGHTS users with a non-default weight), LV_ENOMEM, LV_EAGAIN (inside
 * lv_drr_run callbacks). */
int lv_drr_set_weight(lv_drr_t *d, const char *user, int weight);
/** The weight the user has (or would have): 1 when unset or for an invalid key. */
int lv_drr_weight(const lv_drr_t *d, const char *user);
/** Set a tenant's weight (its share among tenants), like lv_drr_set_weight: 1..LV_DRR_WEIGHT_MAX,
 * 1 removes the entry, from the tenant's next turn. tenant: 1..63 bytes. Same errors. */
int lv_drr_set_tenant_weight(lv_drr_t *d, const char *tenant, int weight);
/** The weight the tenant has (or would have): 1 when unset or for an invalid key. */
int lv_drr_tenant_weight(const lv_drr_t *d, const char *tenant);
/** Every user and tenant weight back to 1 (before applying a new set, e.g. an accounts snapshot).
 * LV_EAGAIN inside lv_drr_run callbacks. */
int lv_drr_clear_weights(lv_drr_t *d);

/** lv_drr_enqueue_tenant under LV_DRR_TENANT_DEFAULT. */
int lv_drr_enqueue(lv_drr_t *d, lv_drr_node_t *node, const char *user, uint64_t now_us);
/** Queue node under user (1..63 bytes, copied into the user record) of tenant (1..63 bytes) at the
 * tail of that user's ring; a user seen for the first time joins the end of its tenant's round, a
 * tenant with nothing queued the end of the tenants' round. A user the scheduler knows (queued, in
 * flight or lingering) stays in the tenant it was first queued under until it is forgotten (a
 * user moved to another tenant is charged there from its next stay). No-op returning 0 when the node
 * is already queued (it keeps its place, user and enqueued_us). Allocates only when a user record
 * must be created and none is cached, or a tenant is seen for the first time (tenant records stay
 * while the tenant has known users, and up to 64 idle ones after): records of users that went idle are kept for reuse, up to
 * the most users queued at once over the last 10-20 s (by now_us) plus 64, and lv_drr_run frees the
 * rest a little at a time, so memory follows the recent peak of queued users. LV_EINVAL (bad key), LV_ENOMEM, LV_EAGAIN (called from
 * inside an lv_drr_run callback). */
int lv_drr_enqueue_tenant(lv_drr_t *d, lv_drr_node_t *node, const char *tenant, const char *user,
                          uint64_t now_us);
/** Take a node out of the queue (its session stopped or is going away); no-op when not queued.
 * Its user record is released when this was its last node (with job tracking: and the user has no
 * job in flight and no linger left). Must not be called from inside an lv_drr_run callback. */
void lv_drr_remove(lv_drr_t *d, lv_drr_node_t *node);

/** Offer queued nodes to try_dispatch in fair order: tenants in round order, each for up to its
 * remaining turn (quantum × tenant weight jobs), in it its users in their round order, each for up
 * to its remaining turn (quantum × user weight jobs), its sessions in ring order. A turn cut short
 * (the tenant's ran out, or every node was BUSY) is resumed where it stopped. Every queued node is offered
 * at most once per run; a node whose age (now_us - enqueued_us) exceeds its max_age_us goes to
 * on_stale instead (removed first, never dispatched, costs nothing). Stops after max_dispatch
 * dispatches, on LV_DRR_STOP, or when every node has been offered. Returns the number dispatched.
 * on_stale may be NULL (stale nodes are then just removed). Callbacks run synchronously, see
 * lv_drr_try_fn / lv_drr_stale_fn for what they may do. */
size_t lv_drr_run(lv_drr_t *d, size_t max_dispatch, uint64_t now_us, lv_drr_try_fn try_dispatch,
                  lv_drr_stale_fn on_stale, void *ud);

/* ---- fair share of the slots in flight ----
 * Deficit round-robin decides who goes next; it does not stop one user from holding every backend
 * slot with long requests while others wait (a dispatch is one job whatever it costs). With job
 * tracking on, the scheduler also counts each tenant's and user's jobs in flight and bounds them:
 *
 *   share(T) = max(1, capacity × weight(T) / sum of the weights of the competing tenants)
 *   share(u) = max(1, share(T) × weight(u) / sum of the weights of T's competing users)
 *
 * where a user competes while it has queued nodes, jobs in flight, or lingers after its last job
 * (lv_drr_job_done's linger_us: about one frame interval, so a user between two frames keeps its
 * place). A user below its share is offered as usual. A user at or over its share is offered only
 * when no other queued user is below its share and, after taking a slot, one free slot would still
 * be left for every lingering user (free = capacity - jobs in flight): it may borrow idle slots but
 * not the ones others are about to come back for. A user held back keeps its turn and its place,
 * like LV_DRR_BUSY. The tenant level works alike: while another tenant competes, a tenant at or
 * over its share is held back while another queued tenant is below its share (its users below
 * their own share included: the floor of 1 per user would otherwise let a tenant of many users
 * take every slot). With one tenant this is the single-level bound. "Over its share" below means
 * the user's bound or its tenant's (the latter only while other tenants compete). The user key is
 * whatever fairness is owed to (a principal's key). */

/** Turn job tracking on (once, before the first run): from now on every LV_DRR_DISPATCHED verdict
 * counts one job in flight for the node's user, and the caller must report its end exactly once
 * with lv_drr_job_done(). User records live while a user has queued nodes, jobs in flight, or
 * lingers. Off by default (then nothing below applies and records live while nodes are queued). */
void lv_drr_track_jobs(lv_drr_t *d);
/** Slots the tracked jobs share (e.g. the sum of the backends' windows); 0 = no share bound (the
 * default). Read at the start of each lv_drr_run(). */
void lv_drr_set_capacity(lv_drr_t *d, size_t slots);
/** A job of `user` dispatched by lv_drr_run() ended (answered, failed, cancelled). The user keeps
 * competing for linger_us after its last job ends (0: not at all). Unknown users and users with no
 * job in flight are ignored (returns LV_ENOTFOUND). May be called from inside lv_drr_run callbacks
 * (no record is freed there). */
int lv_drr_job_done(lv_drr_t *d, const char *user, uint64_t now_us, uint64_t linger_us);
/** Jobs in flight of a user (0 for an unknown one). */
int lv_drr_user_inflight(const lv_drr_t *d, const char *user);
/** Jobs in flight of a tenant's users (0 for an unknown tenant). */
int lv_drr_tenant_inflight(const lv_drr_t *d, const char *tenant);
/** 1 when the user holds at least its share of the slots now (capacity and weights as they are;
 * 0 without a capacity or job tracking). */
int lv_drr_over_share(const lv_drr_t *d, const char *user);
/** The user's share of the slots now (its tenant's share x weight / the competing users' weights of
 * its tenant, at least 1), counted as if it joined for a user not competing yet (in the default
 * tenant then); 0 without a bound (no capacity or no job tracking). */
size_t lv_drr_share(const lv_drr_t *d, const char *user);
/** The first node whose user was below its share and found no slot (LV_DRR_BUSY or LV_DRR_STOP) in
 * the last run, while it stays queued; else NULL. The caller may free a slot for it, e.g. by
 * taking back a job of a user over its share that has produced nothing yet. */
lv_drr_node_t *lv_drr_starved(const lv_drr_t *d);
/** The earliest end of a linger (caller's clock), 0 when nobody lingers: held-back users may go
 * then, so run again at that time if nodes wait. */
uint64_t lv_drr_linger_next_us(const lv_drr_t *d);

/** Estimated number of dispatches that happen before this node's, for showing a queue position:
 * 0 = next. Exact when every offer is dispatched and nothing new is queued meanwhile; a lower bound
 * otherwise (arrivals and re-queued sessions of other users can come first). Also 0 for a node
 * that is not queued. O(users + the node's user's sessions). */
size_t lv_drr_position(const lv_drr_t *d, const lv_drr_node_t *node);

/** Nodes queued. */
size_t lv_drr_queued(const lv_drr_t *d);
/** Users with at least one queued node. */
size_t lv_drr_users_active(const lv_drr_t *d);
/** Tenants with at least one queued node. */
size_t lv_drr_tenants_active(const lv_drr_t *d);
/** Counters for metrics and tests. */
void lv_drr_stats(const lv_drr_t *d, lv_drr_stats_t *out);
/** Walk every internal structure and check it is consistent (counts, links, hash, turns).
 * O(queued + users). For tests and debug builds: 0 when consistent, LV_EINVAL otherwise. */
int lv_drr_check(const lv_drr_t *d);

#endif
