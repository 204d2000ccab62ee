/* fv_conn.h - fakevlm internals shared by fv_server.c (connections, HTTP output, routes) and fv_job.c
 * (the slot model and the answers): the state of the server, a connection and its job, and the
 * calls between the two files. Everything runs on the loop thread. */
#ifndef FV_CONN_H
#define FV_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "fv_chat.h"
#include "fv_http.h"
#include "fv_server.h"
#include "lv_buf.h"
#include "lv_queue.h"

#define FV_READ_CHUNK (64u * 1024u)          /* bytes asked of the kernel per read */
#define FV_TEXT_MAX (4u * 1024u * 1024u)     /* one answer's text (100000 words fit) */
#define FV_OUT_MAX (8u * 1024u * 1024u)      /* bytes one response step may produce */

/* A connection: READING (parsing the next request) -> WAITING (in the slot FIFO) -> RUNNING
 * (holds a slot; its timer paces the answer) -> READING again (keep-alive) or LINGER (FIN sent,
 * draining the peer until it closes). It keeps reading in every state, so a client that leaves
 * mid-answer is seen at once and its slot goes to the next waiter. */
typedef enum { FV_CONN_READING, FV_CONN_WAITING, FV_CONN_RUNNING, FV_CONN_LINGER } fv_conn_state_t;

/* One chat completion in service. Lives inside its connection (one request at a time). */
typedef struct {
    uint64_t seq;
    const char *model;      /* points into the configuration */
    bool stream;            /* SSE answer (after the nostream fault) */
    bool chunked;           /* SSE framed with Transfer-Encoding: chunked (HTTP/1.1 clients) */
    bool include_usage;
    fv_fault_t fault;
    lv_buf_t text;          /* the whole answer; words each followed by one space */
    size_t text_pos;        /* bytes of text already streamed */
    size_t words_total;     /* words to send (max_tokens applied) */
    size_t words_sent;
    bool cut;               /* max_tokens cut the answer: finish_reason "length" */
    bool headers_sent;
    bool malformed_sent;
    size_t prompt_tokens;
    size_t image_bytes;
    unsigned width, height;
    unsigned token_ms;
    uint64_t created_s;     /* wall clock, for the "created" fields */
    char chunk_head[FV_MODEL_MAX + 192]; /* "data: {...,"model":...," shared by the job's SSE events */
    size_t chunk_head_len;
    uint64_t arrived_ms, started_ms, first_due_ms;
    char traceparent[FV_HTTP_TRACEPARENT_MAX + 1]; /* the request's, for its log line ("" none) */
} fv_job_t;

struct fv_server;

typedef struct fv_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;       /* paces the running job */
    uv_shutdown_t shutdown_req;
    struct fv_server *srv;
    lv_queue_t link;        /* srv->conns */
    lv_queue_t wait_link;   /* srv->waiting, while FV_CONN_WAITING */
    lv_buf_t in;            /* bytes of the request being parsed (and any pipelined after it) */
    fv_http_parser_t parser;
    fv_conn_state_t state;
    bool closing;
    int open_handles;       /* freed when both tcp and timer have closed */
    bool sent_continue;
    bool keep_alive;        /* the connection survives the current response */
    uint64_t last_active_ms;
    uint64_t linger_since_ms;
    char peer[64];
    fv_job_t job;
} fv_conn_t;

typedef struct {
    uint64_t http_requests, requests, started, completed, bad_requests, rejected_queue_full;
    uint64_t errors_injected, faults[FV_FAULT_COUNT], client_aborts;
    uint64_t conns_total, conns_refused;
    uint64_t queue_wait_ms_total, queue_wait_ms_max;
    uint64_t busy_slot_ms;  /* integral of busy slots over time, up to busy_mark_ms (fv_job_account) */
    unsigned max_concurrent;
    size_t max_queued;
    uint64_t traced;        /* chat requests that carried a traceparent header */
} fv_stats_t;

#define FV_TRACEPARENTS_KEPT 16 /* the traceparents of the last chat requests, for /stats */

typedef struct fv_server {
    uv_loop_t *loop;
    const fv_config_t *cfg;
    const char *model_ptrs[FV_MODELS_MAX];
    uv_tcp_t listener;
    uv_signal_t sigint, sigterm;
    uv_timer_t sweep;
    lv_queue_t conns;       /* every open connection */
    lv_queue_t waiting;     /* FIFO of connections whose request waits for a slot */
    size_t n_conns, n_waiting;
    unsigned busy;          /* slots in use */
    uint64_t busy_mark_ms;  /* when st.busy_slot_ms was last brought up to date */
    uint64_t seq;           /* chat requests received; numbers them */
    uint64_t start_ms, start_wall_s;
    bool stopping;
    lv_buf_t scratch;       /* one SSE event being formatted */
    char discard[FV_READ_CHUNK]; /* reads of lingering connections land here */
    fv_stats_t st;
    char traceparents[FV_TRACEPARENTS_KEPT][FV_HTTP_TRACEPARENT_MAX + 1]; /* ring, oldest at
                             * tp_head once full: the value each chat request carried ("" none) */
    size_t tp_head, tp_count;
} fv_server_t;

/* ---- fv_server.c ---- */

/** Queue out's bytes for sending; takes its memory (out is left empty, same cap). On a write
 * error the connection is closed (check c->closing) and a negative code returned. */
int fv_conn_send(fv_conn_t *c, lv_buf_t *out);
/** Close now: a waiting or running job is abandoned (its slot freed), handles are closed, and the
 * memory is freed by the last close callback. Safe to call twice and from any callback. */
void fv_conn_close(fv_conn_t *c);
/** End the connection gracefully after queued writes: FIN, then drain until the peer closes. */
void fv_conn_linger(fv_conn_t *c);
/** Parse and serve buffered requests while the connection is READING. */
void fv_conn_process(fv_conn_t *c);
/** Append a status line and headers (content_length -1: chunked, -2: none; extra: whole
 * "Name: value\r\n" lines or NULL) and the blank line. */
int fv_conn_append_head(lv_buf_t *o, const fv_conn_t *c, int status, const char *content_type,
                        long long content_length, const char *extra);
/** Send an OpenAI-style error {"error":{"message","type","param","code"}} with e->status. */
void fv_conn_send_error(fv_conn_t *c, const fv_error_t *e, const char *extra);
void fv_conn_send_simple_error(fv_conn_t *c, int status, const char *type, const char *code, const char *message);

/* ---- fv_job.c ---- */

/** Serve POST /v1/chat/completions: validate, pick the fault, then answer at once (errors,
 * injected 500/429, queue full) or start the job or queue it. body is not kept. */
void fv_job_handle_chat(fv_conn_t *c, const char *body, size_t body_len);
/** Bring st.busy_slot_ms up to now (call before busy changes and before reading it). */
void fv_job_account(fv_server_t *srv);
/** Start waiting jobs while slots are free (FIFO). */
void fv_job_dispatch(fv_server_t *srv);
/** The connection of a WAITING or RUNNING job is closing: log it, leave the queue or the slot. */
void fv_job_abandon(fv_conn_t *c);

#endif
