/* SPDX-License-Identifier: MIT */
/*
 * libwebsockets echo server for bench/run, written against Debian's libwebsockets-dev
 * (4.1): every message goes back with its opcode. UTF-8 of text messages is validated, as
 * eddy, ws, websockets and uWebSockets do. Usage: lws_echo PORT [HOST].
 *
 * lws allows one lws_write() per WRITEABLE callback and no writes elsewhere, so received
 * messages wait in a per-connection FIFO until the socket is writeable.
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct echo_msg {
    struct echo_msg *next;
    size_t len;
    int binary;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then the payload */
} echo_msg_t;

typedef struct session {
    echo_msg_t *head, *tail; /* messages waiting to go back */
    unsigned char *rx;       /* a message arriving in fragments */
    size_t rx_len, rx_cap;
} session_t;

static volatile sig_atomic_t interrupted;
static struct lws_context *context;

static void queue_msg(struct lws *wsi, session_t *s, const void *data, size_t len, int binary)
{
    echo_msg_t *m = malloc(sizeof(*m) + LWS_PRE + len);
    if (m == NULL)
        return;
    m->next = NULL;
    m->len = len;
    m->binary = binary;
    memcpy(m->buf + LWS_PRE, data, len);
    if (s->tail != NULL)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    lws_callback_on_writable(wsi);
}

static int callback_echo(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    session_t *s = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(s, 0, sizeof(*s));
        break;
    case LWS_CALLBACK_RECEIVE: {
        int binary = lws_frame_is_binary(wsi);
        int whole = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
        if (whole && s->rx_len == 0) {
            queue_msg(wsi, s, in, len, binary);
            break;
        }
        if (s->rx_len + len > s->rx_cap) {
            size_t cap = (s->rx_len + len) * 2;
            unsigned char *grown = realloc(s->rx, cap);
            if (grown == NULL)
                return -1;
            s->rx = grown;
            s->rx_cap = cap;
        }
        memcpy(s->rx + s->rx_len, in, len);
        s->rx_len += len;
        if (whole) {
            queue_msg(wsi, s, s->rx, s->rx_len, binary);
            s->rx_len = 0;
        }
        break;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        echo_msg_t *m = s->head;
        if (m == NULL)
            break;
        int n =
            lws_write(wsi, m->buf + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        if (n < (int)m->len)
            return -1;
        s->head = m->next;
        if (s->head == NULL)
            s->tail = NULL;
        free(m);
        if (s->head != NULL)
            lws_callback_on_writable(wsi);
        break;
    }
    case LWS_CALLBACK_CLOSED:
        while (s->head != NULL) {
            echo_msg_t *m = s->head;
            s->head = m->next;
            free(m);
        }
        free(s->rx);
        s->rx = NULL;
        break;
    default:
        break;
    }
    /* Plain HTTP (the upgrade request itself) is handled by the dummy handler. */
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* protocols[0] serves WebSocket clients that name no subprotocol. */
static const struct lws_protocols protocols[] = {
    {"echo", callback_echo, sizeof(session_t), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void on_signal(int signo)
{
    (void)signo;
    interrupted = 1;
    if (context != NULL)
        lws_cancel_service(context);
}

int main(int argc, char **argv)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = argc > 1 ? atoi(argv[1]) : 9504;
    info.iface = argc > 2 ? argv[2] : "127.0.0.1";
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.gid = -1;
    info.uid = -1;
    lws_set_log_level(LLL_ERR, NULL);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    context = lws_create_context(&info);
    if (context == NULL) {
        fprintf(stderr, "lws_echo: cannot create the context\n");
        return 1;
    }
    printf("libwebsockets %s listening on %s:%d\n", lws_get_library_version(), info.iface,
           info.port);
    fflush(stdout);
    while (!interrupted && lws_service(context, 0) >= 0)
        ;
    lws_context_destroy(context);
    return 0;
}
