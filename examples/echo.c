/*
 * echo: every message goes back to its sender with the same opcode, compressed if it came
 * compressed (with --set websocket_compression=true). `make run` starts it.
 */
#include "example.h"

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    int flags = EDDY_WS_FLAG_FIN;
    if (frame->flags & EDDY_WS_FLAG_RSV1)
        flags |= EDDY_WS_FLAG_COMPRESS;
    eddy_push(srv, frame->fd, frame->data, frame->len, frame->opcode, flags);
}

int main(int argc, char **argv)
{
    eddy_server_t *srv = example_new(argc, argv);
    eddy_on_message(srv, on_message);
    return example_run(srv);
}
