/* test_sslmem.c - OpenSSL's allocator with its per-thread block cache: each class reused LIFO,
 * the per-class bound, class edges, realloc across classes, zero sizes, a thread's cache freed at
 * its exit, and real TLS (handshake and 100 round trips over a socketpair) with it installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lv_common.h"
#include "lv_sslmem.h"

#define KIB 1024u
/* the edges of the two classes, as lv_sslmem.h states them */
static const size_t class_lo[LV_SSLMEM_CLASSES] = {16 * KIB + 1, 48 * KIB + 1};
static const size_t class_hi[LV_SSLMEM_CLASSES] = {17 * KIB, 64 * KIB};

static int install_rc = 1; /* set in main, before any OpenSSL call */

static void *xmalloc(size_t n)
{
    return lv_sslmem_malloc(n, __FILE__, __LINE__);
}
static void *xrealloc(void *p, size_t n)
{
    return lv_sslmem_realloc(p, n, __FILE__, __LINE__);
}
static void xfree(void *p)
{
    lv_sslmem_free(p, __FILE__, __LINE__);
}

static lv_sslmem_stats_t stats_now(void)
{
    lv_sslmem_stats_t s;
    lv_sslmem_stats(&s);
    return s;
}

static int setup_empty(void **state)
{
    (void)state;
    lv_sslmem_thread_flush();
    return 0;
}

static void test_install(void **state)
{
    (void)state;
    if (lv_sslmem_caching()) {
        assert_int_equal(install_rc, 0);
        assert_true(lv_sslmem_installed());
        assert_string_equal(lv_sslmem_describe(), "OpenSSL buffer cache on");
        assert_int_equal(lv_sslmem_install(), 0); /* a second call changes nothing */
        assert_true(lv_sslmem_installed());
        /* OPENSSL_malloc goes through it: a class block freed lands on the list */
        lv_sslmem_stats_t s0 = stats_now();
        void *p = OPENSSL_malloc(class_hi[0]);
        assert_non_null(p);
        OPENSSL_free(p);
        assert_int_equal(stats_now().kept, s0.kept + 1);
    } else {
        assert_int_equal(install_rc, LV_EINVAL);
        assert_false(lv_sslmem_installed());
        assert_non_null(strstr(lv_sslmem_describe(), "AddressSanitizer"));
    }
}

/* three blocks of each class come back in the reverse order of their frees */
static void test_reuse_lifo(void **state)
{
    (void)state;
    if (!lv_sslmem_caching())
        skip();
    for (int c = 0; c < LV_SSLMEM_CLASSES; c++) {
        lv_sslmem_stats_t s0 = stats_now();
        size_t sizes[3] = {class_lo[c], (class_lo[c] + class_hi[c]) / 2, class_hi[c]};
        void *p[3];
        for (int i = 0; i < 3; i++) {
            p[i] = xmalloc(sizes[i]);
            assert_non_null(p[i]);
            assert_int_equal((uintptr_t)p[i] % _Alignof(max_align_t), 0);
            memset(p[i], 0x11 * (i + 1), sizes[i]); /* the whole block is writable */
        }
        for (int i = 0; i < 3; i++)
            xfree(p[i]);
        lv_sslmem_stats_t s1 = stats_now();
        assert_int_equal(s1.kept, s0.kept + 3);
        assert_int_equal(s1.held[c], 3);
        /* any request of the class fits any block of it: ask for the largest each time */
        for (int i = 2; i >= 0; i--) {
            void *q = xmalloc(class_hi[c]);
            assert_ptr_equal(q, p[i]);
            memset(q, 0x5a, class_hi[c]);
            p[i] = q;
        }
        lv_sslmem_stats_t s2 = stats_now();
        assert_int_equal(s2.reused, s1.reused + 3);
        assert_int_equal(s2.held[c], 0);
        for (int i = 0; i < 3; i++)
            xfree(p[i]);
    }
}

/* the N+1th free of a class really frees, and the N+1th malloc is a new block */
static void test_bound(void **state)
{
    (void)state;
    for (int c = 0; c < LV_SSLMEM_CLASSES; c++) {
        enum { N = LV_SSLMEM_PER_CLASS + 1 };
        void *p[N];
        for (int i = 0; i < N; i++) {
            p[i] = xmalloc(class_hi[c]);
            assert_non_null(p[i]);
        }
        lv_sslmem_stats_t s0 = stats_now();
        for (int i = 0; i < N; i++)
            xfree(p[i]);
        lv_sslmem_stats_t s1 = stats_now();
        if (!lv_sslmem_caching()) { /* AddressSanitizer: every block goes back to libc */
            assert_int_equal(s1.kept, s0.kept);
            assert_int_equal(s1.released, s0.released + N);
            assert_int_equal(s1.held[c], 0);
            continue;
        }
        assert_int_equal(s1.kept, s0.kept + LV_SSLMEM_PER_CLASS);
        assert_int_equal(s1.released, s0.released + 1);
        assert_int_equal(s1.held[c], LV_SSLMEM_PER_CLASS);
        for (int i = 0; i < N; i++)
            p[i] = xmalloc(class_lo[c]);
        lv_sslmem_stats_t s2 = stats_now();
        assert_int_equal(s2.reused, s1.reused + LV_SSLMEM_PER_CLASS);
        assert_int_equal(s2.held[c], 0);
        for (int i = 0; i < N; i++)
            xfree(p[i]);
        lv_sslmem_thread_flush();
        assert_int_equal(stats_now().held[c], 0);
    }
}

/* just outside each class edge nothing is cached; just inside it is */
static void test_class_edges(void **state)
{
    (void)state;
    const size_t outside[] = {1, 4096, 16 * KIB, 17 * KIB + 1, 32 * KIB, 48 * KIB, 64 * KIB + 1, 256 * KIB};
    for (size_t i = 0; i < LV_ARRAY_LEN(outside); i++) {
        lv_sslmem_stats_t s0 = stats_now();
        void *p = xmalloc(outside[i]);
        assert_non_null(p);
        memset(p, 0x33, outside[i]);
        xfree(p);
        lv_sslmem_stats_t s1 = stats_now();
        assert_int_equal(s1.kept, s0.kept);
        assert_int_equal(s1.released, s0.released);
    }
    for (int c = 0; c < LV_SSLMEM_CLASSES; c++) {
        size_t inside[2] = {class_lo[c], class_hi[c]};
        for (int i = 0; i < 2; i++) {
            lv_sslmem_stats_t s0 = stats_now();
            xfree(xmalloc(inside[i]));
            lv_sslmem_stats_t s1 = stats_now();
            assert_int_equal(s1.kept + s1.released, s0.kept + s0.released + 1);
            assert_int_equal(s1.kept, s0.kept + (lv_sslmem_caching() ? 1 : 0));
        }
    }
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 31u + seed);
}

static void assert_filled(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 31u + seed))
            fail_msg("byte %zu of %zu changed", i, n);
}

/* up and down across both classes and plain sizes: the bytes both sizes share survive */
static void test_realloc_across(void **state)
{
    (void)state;
    const size_t steps[] = {100,      16 * KIB + 100, 16 * KIB + 900, 60 * KIB, 64 * KIB, 200 * KIB,   50 * KIB,
                            17 * KIB, 3000,           16 * KIB + 200, 10,       70 * KIB, 16 * KIB + 1};
    size_t have = 64;
    unsigned char *p = xrealloc(NULL, have); /* realloc(NULL) is malloc */
    assert_non_null(p);
    fill(p, have, 7);
    for (size_t i = 0; i < LV_ARRAY_LEN(steps); i++) {
        size_t want = steps[i];
        unsigned char *q = xrealloc(p, want);
        assert_non_null(q);
        assert_filled(q, LV_MIN(have, want), 7);
        fill(q, want, 7);
        p = q;
        have = want;
    }
    /* within one class the block stays where it is */
    unsigned char *same = xrealloc(p, 16 * KIB + 50);
    assert_ptr_equal(same, p);
    assert_filled(same, 16 * KIB + 1, 7);
    /* realloc to 0 frees: a class block then lands on the list (when caching) */
    lv_sslmem_stats_t s0 = stats_now();
    assert_null(xrealloc(same, 0));
    lv_sslmem_stats_t s1 = stats_now();
    assert_int_equal(s1.kept + s1.released, s0.kept + s0.released + 1);
}

static void test_zero(void **state)
{
    (void)state;
    lv_sslmem_stats_t s0 = stats_now();
    assert_null(xmalloc(0));
    assert_null(xrealloc(NULL, 0));
    xfree(NULL);
    assert_null(xmalloc(SIZE_MAX));
    void *p = xmalloc(1);
    assert_non_null(p);
    assert_null(xrealloc(p, SIZE_MAX)); /* refused; p stays valid */
    *(volatile char *)p = 1;
    assert_null(xrealloc(p, 0));
    lv_sslmem_stats_t s1 = stats_now();
    assert_int_equal(s1.kept, s0.kept);
    assert_int_equal(s1.reused, s0.reused);
    assert_int_equal(s1.released, s0.released);
}

/* A thread's frees go to its own list, and its list is freed when it exits. */
static void *thread_frees(void *arg)
{
    void **blocks = arg;
    for (int i = 0; i < 3; i++)
        xfree(blocks[i]);
    lv_sslmem_stats_t s = stats_now();
    return (void *)(uintptr_t)(s.held[0] + s.held[1]);
}

static void test_thread_exit(void **state)
{
    (void)state;
    void *blocks[3] = {xmalloc(class_hi[0]), xmalloc(class_lo[1]), xmalloc(class_hi[1])};
    for (int i = 0; i < 3; i++)
        assert_non_null(blocks[i]);
    lv_sslmem_stats_t s0 = stats_now();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, thread_frees, blocks), 0);
    void *held = NULL;
    assert_int_equal(pthread_join(t, &held), 0);
    lv_sslmem_stats_t s1 = stats_now();
    /* nothing landed on this thread's lists */
    assert_int_equal(s1.kept, s0.kept);
    assert_int_equal(s1.held[0], s0.held[0]);
    assert_int_equal(s1.held[1], s0.held[1]);
    if (lv_sslmem_caching()) {
        assert_int_equal((uintptr_t)held, 3);
        assert_int_equal(s1.freed_at_thread_exit, s0.freed_at_thread_exit + 3);
    } else {
        assert_int_equal((uintptr_t)held, 0);
        assert_int_equal(s1.freed_at_thread_exit, s0.freed_at_thread_exit);
    }
}

/* ---- real TLS over a socketpair ---- */

static EVP_PKEY *key;
static X509 *cert;

static void make_cert(void)
{
    key = EVP_EC_gen("P-256");
    assert_non_null(key);
    cert = X509_new();
    assert_non_null(cert);
    assert_int_equal(X509_set_version(cert, 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    assert_int_equal(X509_set_pubkey(cert, key), 1);
    X509_NAME *name = X509_get_subject_name(cert);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0), 1);
    assert_int_equal(X509_set_issuer_name(cert, name), 1);
    assert_true(X509_sign(cert, key, EVP_sha256()) > 0);
}

/* Write all of buf on one end and read it all on the other; both sockets are non-blocking and
 * the socketpair's buffer takes a whole message, so WANT_READ only means "drive the writer". */
static void pass(SSL *from, SSL *to, const unsigned char *buf, size_t len, unsigned char *got)
{
    size_t written = 0, read = 0;
    for (int spins = 0; read < len; spins++) {
        assert_true(spins < 10000);
        if (written < len) {
            size_t n = 0;
            if (SSL_write_ex(from, buf + written, len - written, &n) == 1)
                written += n;
            else
                assert_int_equal(SSL_get_error(from, 0), SSL_ERROR_WANT_WRITE);
        }
        size_t n = 0;
        if (SSL_read_ex(to, got + read, len - read, &n) == 1)
            read += n;
        else
            assert_int_equal(SSL_get_error(to, 0), SSL_ERROR_WANT_READ);
    }
    assert_memory_equal(got, buf, len);
}

static void test_tls_round_trips(void **state)
{
    (void)state;
    if (!lv_sslmem_installed())
        skip(); /* AddressSanitizer build: OpenSSL uses libc directly */
    enum { ROUNDS = 100, MAX_MSG = 40000 };
    make_cert();
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(sctx);
    assert_non_null(cctx);
    /* the front door's settings (lv_tlsio.c): buffers released when idle, 64 KiB read-ahead */
    SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(sctx, 1);
    SSL_CTX_set_default_read_buffer_len(sctx, 64 * KIB);
    assert_int_equal(SSL_CTX_use_certificate(sctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(sctx, key), 1);
    /* the client releases its buffers too (as curl does), so both ends use both classes */
    SSL_CTX_set_mode(cctx, SSL_MODE_RELEASE_BUFFERS);

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(fcntl(sv[i], F_SETFL, O_NONBLOCK), 0);
    SSL *srv = SSL_new(sctx), *cli = SSL_new(cctx);
    assert_non_null(srv);
    assert_non_null(cli);
    assert_int_equal(SSL_set_fd(srv, sv[0]), 1);
    assert_int_equal(SSL_set_fd(cli, sv[1]), 1);
    SSL_set_accept_state(srv);
    SSL_set_connect_state(cli);
    int srv_done = 0, cli_done = 0;
    for (int i = 0; i < 100 && !(srv_done && cli_done); i++) {
        if (!srv_done)
            srv_done = SSL_do_handshake(srv) == 1;
        if (!cli_done)
            cli_done = SSL_do_handshake(cli) == 1;
    }
    assert_true(srv_done && cli_done);

    static unsigned char msg[MAX_MSG], got[MAX_MSG];
    lv_sslmem_stats_t s0 = stats_now();
    for (int r = 0; r < ROUNDS; r++) {
        /* 1 byte to 40000 (three records), different each round */
        size_t len = 1 + (size_t)r * 7919u % MAX_MSG;
        fill(msg, len, (unsigned)r);
        pass(cli, srv, msg, len, got);
        fill(msg, len, (unsigned)r + 1);
        pass(srv, cli, msg, len, got);
    }
    lv_sslmem_stats_t s1 = stats_now();
    /* Each round each end mallocs a write buffer and a read buffer and frees both once drained;
     * all but the first few are served from the lists. Counted loosely (two per end per round,
     * less the first round's misses), so a change in when OpenSSL frees does not break it, but
     * a cache that reuses nothing does. */
    assert_true(s1.reused - s0.reused >= 4 * (ROUNDS - 1));
    assert_true(s1.held[0] >= 1 && s1.held[1] >= 1); /* the last round's buffers wait for reuse */

    SSL_free(srv);
    SSL_free(cli);
    close(sv[0]);
    close(sv[1]);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    X509_free(cert);
    EVP_PKEY_free(key);
}

int main(void)
{
    /* before any OpenSSL call: this is what main.c does */
    install_rc = lv_sslmem_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_install, setup_empty),
        cmocka_unit_test_setup(test_reuse_lifo, setup_empty),
        cmocka_unit_test_setup(test_bound, setup_empty),
        cmocka_unit_test_setup(test_class_edges, setup_empty),
        cmocka_unit_test_setup(test_realloc_across, setup_empty),
        cmocka_unit_test_setup(test_zero, setup_empty),
        cmocka_unit_test_setup(test_thread_exit, setup_empty),
        cmocka_unit_test_setup(test_tls_round_trips, setup_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
