/* SPDX-License-Identifier: MIT */
/*
 * frames: close, ping and pong frames delivered to the message callback (seed 003's
 * open_websocket_close_frame, open_websocket_ping_frame and open_websocket_pong_frame).
 * Pings are answered by hand as the seed does: with a new, empty pong frame. RFC 6455 5.5.3
 * asks for the ping's payload back, so clients that match pongs to pings by payload (python
 * websockets) see only their empty pings answered.
 */
#include "example.h"

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    switch (frame->opcode) {
    case EDDY_WS_OPCODE_CLOSE:
        flockfile(stdout); /* one line (stdio locks nest) */
        printf("Close frame received: Code %u Reason ", frame->code);
        example_print("", frame->reason, frame->reason_len, "\n");
        funlockfile(stdout);
        break;
    case EDDY_WS_OPCODE_PING:
        printf("Ping frame received: Code %d\n", frame->opcode);
        eddy_push(srv, frame->fd, NULL, 0, EDDY_WS_OPCODE_PONG, EDDY_WS_FLAG_FIN);
        break;
    case EDDY_WS_OPCODE_PONG:
        printf("Pong frame received: Code %d\n", frame->opcode);
        break;
    default:
        example_print("Message received: ", frame->data, frame->len, "\n");
        break;
    }
}

static const example_spec_t spec = {
    .name = "frames",
    .summary = "Prints the close, ping and pong frames it receives (seed 003).",
    .settings = (const example_setting_t[]){{"open_websocket_close_frame", "true"},
                                            {"open_websocket_ping_frame", "true"},
                                            {"open_websocket_pong_frame", "true"},
                                            {NULL, NULL}},
};

int main(int argc, char **argv)
{
    eddy_server_t *srv = example_new(argc, argv, &spec);
    eddy_on_message(srv, on_message);
    return example_run(srv);
}
