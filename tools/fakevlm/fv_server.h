/* fv_server.h - fakevlm's single-threaded libuv server: HTTP/1.1 connections, a slot/queue
 * latency model and fault injection. */
#ifndef FV_SERVER_H
#define FV_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "fv_chat.h"

#define FV_VERSION "0.1.0"
#define FV_CONNS_MAX 4096           /* open connections; more are accepted and closed at once */
#define FV_IDLE_TIMEOUT_MS 30000    /* a connection with no request in progress is closed after this */

/** Configuration, read once at start (filled by fv_main.c from the command line). */
typedef struct {
    char host[64];
    int port;                       /* 0 = let the kernel pick */
    char models[FV_MODELS_MAX][FV_MODEL_MAX + 1];
    size_t n_models;
    unsigned slots;                 /* requests served in parallel */
    unsigned ttft_ms;               /* service start -> first token */
    unsigned token_ms;              /* between tokens after the first */
    unsigned jitter_ms;             /* uniform 0..jitter_ms added to each request's ttft */
    unsigned tokens;                /* words per answer (at least FV_HEADER_WORDS) */
    unsigned queue_max;             /* requests that may wait for a slot; more get 429 */
    fv_fault_t fault;               /* injected into fault_rate of the requests */
    double fault_rate;
    uint64_t seed;
    const char *port_file;          /* NULL or a path to write the bound port to */
    bool quiet;
} fv_config_t;

/** Bind, listen and serve until SIGINT or SIGTERM, then close every handle and return 0.
 * Returns LV_EIO (after logging why) when the address cannot be bound or the port file written.
 * cfg must outlive the call. */
int fv_server_run(const fv_config_t *cfg);

#endif
