/* SPDX-License-Identifier: MIT */
/*
 * custom_handshake: the application answers the upgrade itself (seed 003, onHandShake).
 * It validates the key as the seed does, prints it (without a newline, like the seed),
 * echoes a requested subprotocol, answers 101, and, since open is not called after a
 * custom handshake, uses defer to print "Client connected" and greet the client.
 */
#include <regex.h>
#include <stdint.h>

#include "example.h"

static regex_t key_pattern;

static void greet(eddy_server_t *srv, void *arg)
{
    eddy_fd_t fd = (eddy_fd_t)(uintptr_t)arg;
    static const char welcome[] = "hello, welcome\n";
    printf("Client connected\n");
    eddy_push(srv, fd, welcome, sizeof(welcome) - 1, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
}

static void on_handshake(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                         void *user_data)
{
    const char *key = eddy_request_header(req, "sec-websocket-key");
    char accept[EDDY_WS_ACCEPT_LEN + 1];
    if (key == NULL || regexec(&key_pattern, key, 0, NULL, 0) != 0 ||
        eddy_ws_accept_key(key, strlen(key), accept) != 0) {
        eddy_response_end(resp, NULL, 0); /* no 101: the handshake fails */
        return;
    }
    fputs(key, stdout);
    eddy_response_header(resp, "Upgrade", "websocket");
    eddy_response_header(resp, "Connection", "Upgrade");
    eddy_response_header(resp, "Sec-WebSocket-Accept", accept);
    eddy_response_header(resp, "Sec-WebSocket-Version", "13");
    const char *protocols = eddy_request_header(req, "sec-websocket-protocol");
    if (protocols != NULL) {
        /* Answer one of the offered protocols (the first), never the whole list. */
        char first[128];
        size_t n = strcspn(protocols, ", ");
        if (n > 0 && n < sizeof(first)) {
            memcpy(first, protocols, n);
            first[n] = '\0';
            eddy_response_header(resp, "Sec-WebSocket-Protocol", first);
        }
    }
    eddy_response_status(resp, 101, NULL);
    eddy_response_end(resp, NULL, 0);
    eddy_defer(srv, greet, (void *)(uintptr_t)eddy_request_fd(req));
}

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    eddy_push(srv, frame->fd, frame->data, frame->len, frame->opcode, EDDY_WS_FLAG_FIN);
}

static const example_spec_t spec = {
    .name = "custom_handshake",
    .summary = "Answers the WebSocket handshake itself, then greets the client (seed 003).",
};

int main(int argc, char **argv)
{
    if (regcomp(&key_pattern, "^[+/0-9A-Za-z]{21}[AQgw]==$", REG_EXTENDED | REG_NOSUB) != 0)
        return 1;
    eddy_server_t *srv = example_new(argc, argv, &spec);
    eddy_on_handshake(srv, on_handshake);
    eddy_on_message(srv, on_message);
    int rc = example_run(srv);
    regfree(&key_pattern);
    return rc;
}
