/* test_tlist.c - timeout lists (lv_tlist.h): sorted by construction, re-arming moves to the tail,
 * cancel, pop only what expired; and outgoing messages (lv_msg.c): the WebSocket frame header
 * sits right before the payload, so header and payload leave as one buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lv_net.h"
#include "lv_tlist.h"
#include "lv_wsframe.h"

typedef struct {
    int id;
    lv_tlist_entry_t tmo;
} item_t;

static int pop_id(lv_tlist_t *l, uint64_t now)
{
    lv_tlist_entry_t *e = lv_tlist_pop_expired(l, now);
    return e ? LV_CONTAINER_OF(e, item_t, tmo)->id : -1;
}

static void expire_in_order(void **state)
{
    lv_tlist_t l;
    item_t it[3] = {{1, {{0}, 0}}, {2, {{0}, 0}}, {3, {{0}, 0}}};
    lv_tlist_init(&l, 1000);
    for (int i = 0; i < 3; i++) {
        lv_tlist_entry_init(&it[i].tmo);
        assert_false(lv_tlist_armed(&it[i].tmo));
        lv_tlist_arm(&l, &it[i].tmo, 100 + (uint64_t)i * 10);
        assert_true(lv_tlist_armed(&it[i].tmo));
    }
    assert_int_equal(pop_id(&l, 1099), -1);   /* nothing yet */
    assert_int_equal(pop_id(&l, 1100), 1);    /* deadline is inclusive */
    assert_int_equal(pop_id(&l, 1100), -1);
    assert_false(lv_tlist_armed(&it[0].tmo)); /* popped entries are detached */
    assert_int_equal(pop_id(&l, 5000), 2);
    assert_int_equal(pop_id(&l, 5000), 3);
    assert_int_equal(pop_id(&l, 5000), -1);
}

static void rearm_and_cancel(void **state)
{
    lv_tlist_t a, b;
    item_t x = {1, {{0}, 0}}, y = {2, {{0}, 0}};
    lv_tlist_init(&a, 1000);
    lv_tlist_init(&b, 10);
    lv_tlist_entry_init(&x.tmo);
    lv_tlist_entry_init(&y.tmo);
    lv_tlist_arm(&a, &x.tmo, 0);
    lv_tlist_arm(&a, &y.tmo, 0);
    lv_tlist_arm(&a, &x.tmo, 500); /* activity: x goes behind y */
    assert_int_equal(pop_id(&a, 1000), 2);
    assert_int_equal(pop_id(&a, 1000), -1);
    assert_int_equal(pop_id(&a, 1500), 1);
    lv_tlist_arm(&a, &x.tmo, 2000);
    lv_tlist_arm(&b, &x.tmo, 2000); /* moving to another list leaves the first */
    assert_int_equal(pop_id(&a, 99999), -1);
    assert_int_equal(pop_id(&b, 2010), 1);
    lv_tlist_arm(&b, &y.tmo, 3000);
    lv_tlist_cancel(&y.tmo);
    lv_tlist_cancel(&y.tmo); /* idempotent */
    assert_int_equal(pop_id(&b, 99999), -1);
}

static void ws_messages_carry_their_header(void **state)
{
    static const size_t lens[] = {0, 1, 125, 126, 65535, 65536, 70000};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = lens[i];
        unsigned char *p = test_malloc(n + 1);
        memset(p, 'a', n + 1);
        lv_msg_t *m = lv_msg_new(p, n, i % 2 == 1);
        assert_non_null(m);
        uint8_t hdr[10];
        size_t hl = lv_ws_frame_header(hdr, i % 2 ? LV_WS_OP_BINARY : LV_WS_OP_TEXT, n);
        assert_int_equal(m->len, n);
        assert_int_equal(m->wire_len, hl + n);
        assert_memory_equal(m->wire, hdr, hl);
        if (n)
            assert_memory_equal(m->wire + hl, p, n);
        m->refs++;
        lv_msg_unref(m);
        lv_msg_unref(m);
        test_free(p);
    }
    lv_msg_t *raw = lv_msg_raw("HTTP/1.1 200 OK\r\n\r\n", 19);
    assert_int_equal(raw->wire_len, 19);
    assert_memory_equal(raw->wire, "HTTP", 4);
    lv_msg_unref(raw);
    static const char asset[] = "static bytes";
    lv_msg_t *st = lv_msg_static(asset, sizeof(asset) - 1);
    assert_ptr_equal(st->wire, asset);
    lv_msg_unref(st);
    lv_msg_t *pong = lv_msg_ws_control(LV_WS_OP_PONG, "hi", 2);
    assert_int_equal(pong->wire_len, 4);
    assert_int_equal(pong->wire[0], 0x8A);
    assert_int_equal(pong->wire[1], 2);
    lv_msg_unref(pong);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(expire_in_order),
        cmocka_unit_test(rearm_and_cancel),
        cmocka_unit_test(ws_messages_carry_their_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
