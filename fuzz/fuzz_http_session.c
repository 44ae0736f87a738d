/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for the HTTP/1.1 server session (src/http.c over src/conn.c), and the
 * WebSocket session its upgrade requests lead into, with no network (fuzz/session.h).
 *
 * Input: an action byte, a split byte, then the bytes the client sends.
 * - action byte: two bits per request (the n-th request uses bits 2(n%4)..2(n%4)+1) say
 *   how the request callback answers: 0 ends with the body echoed, 1 writes a chunk and
 *   ends (chunked), 2 detaches the response and ends it later (when the connection pauses
 *   for it, or before it ends), 3 returns without an answer (eddy answers 500);
 * - split byte: 0 feeds the rest whole, n feeds it in pieces of 1..n bytes.
 * permessage-deflate is enabled, so upgrades may negotiate it.
 *
 * Checked invariants, besides no crash, leak or hang:
 * - the request callback runs for an HTTP connection with no detached response pending
 *   (the connection reads no further request meanwhile);
 * - a request's body has the length it claims, and the callback's accessors never fail on
 *   a parsed request;
 * - a delivered WebSocket text message is valid UTF-8, never after a close was sent.
 */
#include "fuzz.h"
#include "ref_utf8.h"
#include "session.h"
#include "ws.h"

static fuzz_session_t session;
static uint8_t actions;
static unsigned requests;
static eddy_response_t *detached;

static void on_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                       void *user_data)
{
    (void)srv;
    (void)user_data;
    FUZZ_CHECK(detached == NULL);
    FUZZ_CHECK(eddy_request_method(req) != NULL && eddy_request_path(req) != NULL);
    FUZZ_CHECK(eddy_request_uri(req) != NULL);
    size_t body_len = 0;
    const char *body = eddy_request_body(req, &body_len);
    FUZZ_CHECK(body != NULL || body_len == 0);
    (void)eddy_request_get(req, "a");
    (void)eddy_request_cookie(req, "c");
    (void)eddy_request_header(req, "host");
    switch ((actions >> (2 * (requests++ % 4))) & 3) {
    case 0:
        eddy_response_header(resp, "X-Fuzz", "1");
        eddy_response_end(resp, body, body_len);
        break;
    case 1:
        eddy_response_write(resp, "chunk", 5);
        eddy_response_end(resp, body, body_len);
        break;
    case 2:
        eddy_response_detach(resp);
        detached = resp;
        break;
    default:
        break;
    }
}

static void end_detached(fuzz_session_t *s)
{
    (void)s;
    if (detached != NULL) {
        eddy_response_t *resp = detached;
        detached = NULL;
        eddy_response_end(resp, "later", 5);
    }
}

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    (void)user_data;
    eddy__conn_t *conn = session.conn;
    FUZZ_CHECK(frame->fd == conn->id);
    FUZZ_CHECK(!conn->ending && !eddy__ws_close_sent(conn));
    if (frame->opcode == EDDY_WS_OPCODE_TEXT)
        FUZZ_CHECK(ref_valid((const uint8_t *)frame->data, frame->len));
    (void)eddy_push(srv, frame->fd, frame->data, frame->len, frame->opcode,
                    EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_COMPRESS);
}

static void setup(eddy_server_t *srv)
{
    eddy_on_request(srv, on_request);
    eddy_on_message(srv, on_message);
    FUZZ_CHECK(eddy_server_set(srv, "websocket_compression", "true") == 0);
    /* Small limits reach the 413 and 1009 paths with small inputs. */
    FUZZ_CHECK(eddy_server_set(srv, "package_max_length", "65536") == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    actions = data[0];
    requests = 0;
    detached = NULL;
    eddy_server_t *srv = fuzz_server(setup);
    fuzz_session_new(&session, srv, &eddy__http_proto);
    session.settle = end_detached;
    fuzz_session_feed_split(&session, data + 2, size - 2, data[1]);
    fuzz_session_free(&session);
    return 0;
}
