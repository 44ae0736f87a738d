/* SPDX-License-Identifier: MIT */
/*
 * push_all: the WebSocket\Server manual's onRequest example (seed 003). GET /?message=X
 * pushes X to every established WebSocket and answers with how many received it.
 */
#include "example.h"

static void on_open(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    printf("server: handshake success with fd%llu\n", (unsigned long long)eddy_request_fd(req));
}

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    flockfile(stdout); /* one line (stdio locks nest) */
    printf("receive from %llu:", (unsigned long long)frame->fd);
    example_print("", frame->data, frame->len, "");
    printf(",opcode:%d,fin:%d\n", frame->opcode, frame->finish ? 1 : 0);
    funlockfile(stdout);
    static const char reply[] = "this is server";
    eddy_push(srv, frame->fd, reply, sizeof(reply) - 1, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
}

static void on_close(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    printf("client %llu closed\n", (unsigned long long)fd);
}

struct broadcast {
    const char *message;
    size_t len;
    unsigned pushed;
};

static bool push_one(eddy_server_t *srv, eddy_fd_t fd, void *arg)
{
    struct broadcast *b = arg;
    /* Only established WebSockets: the HTTP connection asking is one of the connections.
     * EDDY_QUEUED (a connection behind) was sent too; only errors (< 0) were not. */
    if (eddy_is_established(srv, fd) &&
        eddy_push(srv, fd, b->message, b->len, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN) >= 0)
        b->pushed++;
    return true;
}

static void on_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                       void *user_data)
{
    const char *message = eddy_request_get(req, "message");
    if (message == NULL) {
        eddy_response_status(resp, 400, NULL);
        eddy_response_end(resp, "missing ?message=\n", 18);
        return;
    }
    struct broadcast b = {message, strlen(message), 0};
    eddy_connection_foreach(srv, push_one, &b);
    char body[24];
    int n = snprintf(body, sizeof(body), "%u", b.pushed);
    eddy_response_header(resp, "Content-Type", "text/plain");
    eddy_response_end(resp, body, (size_t)n);
}

static const example_spec_t spec = {
    .name = "push_all",
    .summary = "GET /?message=X pushes X to every WebSocket and answers the count (seed 003).",
};

int main(int argc, char **argv)
{
    eddy_server_t *srv = example_new(argc, argv, &spec);
    eddy_on_open(srv, on_open);
    eddy_on_message(srv, on_message);
    eddy_on_close(srv, on_close);
    eddy_on_request(srv, on_request);
    return example_run(srv);
}
