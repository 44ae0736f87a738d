/* SPDX-License-Identifier: MIT */
/*
 * echo: every message goes back to its sender with the same opcode, compressed if it came
 * compressed. `make run` starts it, and conformance runs (Autobahn|Testsuite) use it: so it
 * offers compression and takes messages of up to 64 MiB by default (Autobahn's section 9
 * sends 16 MiB); --set websocket_compression=false or --set package_max_length=N change that.
 */
#include "example.h"

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    int flags = EDDY_WS_FLAG_FIN;
    if (frame->flags & EDDY_WS_FLAG_RSV1)
        flags |= EDDY_WS_FLAG_COMPRESS;
    eddy_push(srv, frame->fd, frame->data, frame->len, frame->opcode, flags);
}

static const example_spec_t spec = {
    .name = "echo",
    .summary = "Pushes every message back to its sender with the same opcode.",
    .settings = (const example_setting_t[]){{"websocket_compression", "true"},
                                            {"package_max_length", "67108864"},
                                            {NULL, NULL}},
};

int main(int argc, char **argv)
{
    eddy_server_t *srv = example_new(argc, argv, &spec);
    eddy_on_message(srv, on_message);
    return example_run(srv);
}
