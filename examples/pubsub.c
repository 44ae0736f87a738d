/* SPDX-License-Identifier: MIT */
/*
 * pubsub: rooms over WebSocket. ws://host:port/sub?topic=T subscribes the connection to T
 * when it opens; every message received on ws://host:port/pub?topic=T is published to T
 * (framed once, shared by all subscribers, on every loop). Any other path is an echo.
 * eddy-bench's publish scenario drives it.
 */
#include "example.h"

/* A publisher keeps its topic as connection user data. */
static void on_open(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    const char *topic = eddy_request_get(req, "topic");
    if (topic == NULL)
        return;
    eddy_fd_t fd = eddy_request_fd(req);
    if (strcmp(eddy_request_path(req), "/sub") == 0)
        eddy_subscribe(srv, fd, topic);
    else if (strcmp(eddy_request_path(req), "/pub") == 0)
        eddy_conn_set_user_data(srv, fd, strdup(topic));
}

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    const char *topic = eddy_conn_user_data(srv, frame->fd);
    int flags = EDDY_WS_FLAG_FIN;
    if (frame->flags & EDDY_WS_FLAG_RSV1)
        flags |= EDDY_WS_FLAG_COMPRESS;
    if (topic != NULL)
        eddy_publish(srv, topic, frame->data, frame->len, frame->opcode, flags);
    else
        eddy_push(srv, frame->fd, frame->data, frame->len, frame->opcode, flags);
}

static void on_close(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    free(eddy_conn_user_data(srv, fd));
}

static const example_spec_t spec = {
    .name = "pubsub",
    .summary = "Rooms: /sub?topic=T subscribes, messages on /pub?topic=T are published to T.",
};

int main(int argc, char **argv)
{
    eddy_server_t *srv = example_new(argc, argv, &spec);
    eddy_on_open(srv, on_open);
    eddy_on_message(srv, on_message);
    eddy_on_close(srv, on_close);
    return example_run(srv);
}
