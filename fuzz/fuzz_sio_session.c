/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for the real-time layer's sessions over the WebSocket transport
 * (rt/eio.c, rt/rt.c over the engine), with no network (fuzz/session.h): a server with
 * eddy_rt installed and the Socket.IO test application (fuzz/rt_app.h) talks with up to
 * two clients whose frames the input gives.
 *
 * Input: a control byte, then records separated by '\n' (so that dictionary entries
 * inserted anywhere keep the frames apart). Control bit 0: the first client speaks
 * Engine.IO 3 (socket.io-client 2.x) rather than 4; bit 1: the same for the second client.
 * Each client's connection starts with the driver's handshake (GET
 * /socket.io/?EIO=<3|4>&transport=websocket, Upgrade headers). A record is:
 *   0x01 <bytes>  a binary frame;
 *   0x02 <bytes>  a ping frame (payload cut to 125 bytes);
 *   0x03 <bytes>  a close frame (the client then sends nothing more);
 *   0x04          switch to the other client (its connection opens on first use);
 *   0x05 <bytes>  a text message sent as two fragments (cut in the middle);
 *   0x06          move the clock to the next timer and run it (fuzz/timers.h): a ping, a
 *                 ping timeout, the connect timeout, an acknowledgement timeout;
 *   anything else a text frame of the whole record ("40", "42[\"message\",1]", "2").
 * Each frame is written whole and read by the connection before the next one, so the
 * server's answers come in between as over a real connection.
 *
 * Checked invariants, besides no crash, leak or hang: everything each client receives
 * passes fuzz/rt_app.h's checker (every frame a valid Engine.IO packet of its protocol,
 * every message a Socket.IO packet rt/sio_packet.c decodes, binary attachments exactly as
 * announced, nothing after a close); the application's calls succeed where they must; once
 * both connections ended and every deadline passed, no socket is left in any namespace and
 * no timer of the input is left (fuzz/timers.h).
 */
#include "fuzz.h"
#include "http.h"
#include "rt_app.h"
#include "session.h"
#include "timers.h"

typedef struct client {
    fuzz_session_t fs; /* first: the output hook gets &fs */
    ws_check_t check;
    bool started;
    bool done; /* sent a close frame */
} client_t;

static client_t clients[2];
static uint8_t frame[(1 << 16) + 32];

static void on_output(fuzz_session_t *fs, const uint8_t *data, size_t len)
{
    client_t *c = (client_t *)fs;
    ws_check_feed(&c->check, data, len);
}

static void client_start(client_t *c, eddy_server_t *srv, int protocol)
{
    fuzz_session_new(&c->fs, srv, &eddy__http_proto);
    c->fs.output = on_output;
    ws_check_reset(&c->check, protocol, false);
    c->started = true;
    c->done = false;
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "GET /socket.io/?EIO=%d&transport=websocket HTTP/1.1\r\n" WS_UPGRADE_HEADERS,
                     protocol);
    fuzz_session_feed(&c->fs, (const uint8_t *)req, (size_t)n);
}

static void client_send(client_t *c, const uint8_t *rec, size_t len)
{
    if (c->done || c->fs.conn->ending)
        return;
    if (len > 65535)
        len = 65535;
    size_t n = ws_record_frames(frame, rec, len, &c->done);
    fuzz_session_feed(&c->fs, frame, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t control = data[0];
    eddy_server_t *srv = fuzz_server(app_install);
    fuzz_timers_start(srv->loops[0]);
    client_t *cur = &clients[0];
    client_start(cur, srv, (control & 1) ? 3 : 4);
    clients[1].started = false;
    const uint8_t *p = data + 1, *end = data + size;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        const uint8_t *rec_end = nl != NULL ? nl : end;
        size_t len = (size_t)(rec_end - p);
        if (len == 1 && p[0] == 4) {
            cur = cur == &clients[0] ? &clients[1] : &clients[0];
            if (!cur->started)
                client_start(cur, srv, (control & 2) ? 3 : 4);
        } else if (len == 1 && p[0] == 6) {
            fuzz_timers_next(srv->loops[0]);
            for (int i = 0; i < 2; i++)
                if (clients[i].started)
                    fuzz_session_drain(&clients[i].fs);
        } else {
            client_send(cur, p, len);
        }
        p = nl != NULL ? nl + 1 : end;
    }
    for (int i = 0; i < 2; i++)
        if (clients[i].started)
            fuzz_session_end(&clients[i].fs);
    for (int i = 0; i < 2; i++)
        if (clients[i].started)
            fuzz_session_free(&clients[i].fs);
    fuzz_timers_expire(srv->loops[0]);
    app_check_empty();
    app_release_sockets();
    return 0;
}
