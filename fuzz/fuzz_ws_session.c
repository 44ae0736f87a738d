/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for the WebSocket session (src/ws.c over src/conn.c), with no network
 * (fuzz/session.h).
 *
 * Input: a control byte, a split byte, then the bytes the peer sends.
 * - control bit 0: the session's role (0 server, 1 client); bit 1: permessage-deflate
 *   agreed; bits 2-3: server and client no context takeover; bits 4-5 pick the window
 *   bits; bit 6: messages are echoed back (compressed when bit 7 is set too);
 * - split byte: 0 feeds the rest whole, n feeds it in pieces of 1..n bytes.
 *
 * Checked invariants, besides no crash, leak or hang:
 * - a delivered text message is valid UTF-8 (tests/support/ref_utf8.h);
 * - nothing is delivered after the session sent its close frame, or once it is closing;
 * - a delivered message has FIN, and MASK exactly when the session is a server.
 */
#include "fuzz.h"
#include "ref_utf8.h"
#include "session.h"
#include "ws.h"

static fuzz_session_t session;
static enum eddy__ws_role role;
static eddy__pmd_t pmd;
static bool with_pmd, echo, echo_compressed;

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    (void)user_data;
    eddy__conn_t *conn = session.conn;
    FUZZ_CHECK(frame->fd == conn->id);
    FUZZ_CHECK(!conn->ending && !eddy__ws_close_sent(conn));
    FUZZ_CHECK(frame->flags & EDDY_WS_FLAG_FIN);
    FUZZ_CHECK(!(frame->flags & EDDY_WS_FLAG_MASK) == (role == EDDY__WS_CLIENT));
    if (frame->opcode == EDDY_WS_OPCODE_TEXT)
        FUZZ_CHECK(ref_valid((const uint8_t *)frame->data, frame->len));
    if (echo) {
        int flags = EDDY_WS_FLAG_FIN | (echo_compressed ? EDDY_WS_FLAG_COMPRESS : 0);
        int rc = eddy_push(srv, frame->fd, frame->data, frame->len, frame->opcode, flags);
        FUZZ_CHECK(rc != EDDY_EINVAL);
    }
}

static void setup(eddy_server_t *srv)
{
    eddy_on_message(srv, on_message);
    /* Small limits reach the 1009 path with small inputs. */
    FUZZ_CHECK(eddy_server_set(srv, "package_max_length", "65536") == 0);
}

static int start(eddy__conn_t *conn)
{
    return eddy__ws_start(conn, role, with_pmd ? &pmd : NULL);
}

static void no_state(eddy__conn_t *conn)
{
    (void)conn;
}

static const eddy__proto_t handshake_done = {.start = start, .free = no_state};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t control = data[0];
    size_t max_piece = data[1];
    role = (control & 1) ? EDDY__WS_CLIENT : EDDY__WS_SERVER;
    with_pmd = control & 2;
    static const uint8_t bits[4] = {15, 12, 9, 10};
    pmd = (eddy__pmd_t){.server_window_bits = bits[(control >> 4) & 3],
                        .client_window_bits = bits[(control >> 4) & 3] == 9 ? 8 : 15,
                        .server_no_context_takeover = control & 4,
                        .client_no_context_takeover = control & 8};
    echo = control & 0x40;
    echo_compressed = control & 0x80;
    eddy_server_t *srv = fuzz_server(setup);
    fuzz_session_new(&session, srv, &handshake_done);
    fuzz_session_feed_split(&session, data + 2, size - 2, max_piece);
    fuzz_session_free(&session);
    return 0;
}
