/* SPDX-License-Identifier: MIT */
/*
 * seed_disconnect: Swoole 4.7's onDisconnect article (seed 000). A WebSocket client gets
 * "client-N is closed, WebSocket status is 3"; an HTTP request closed with ?close=1 gets
 * "client-N is Disconnect", or, with --no-disconnect (no disconnect callback),
 * "client-N is not a valid WebSocket connection".
 */
#include "example.h"

static void on_open(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    static const char welcome[] = "hello, welcome\n";
    eddy_push(srv, eddy_request_fd(req), welcome, sizeof(welcome) - 1, EDDY_WS_OPCODE_TEXT,
              EDDY_WS_FLAG_FIN);
}

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    example_print("Message: ", frame->data, frame->len, "\n");
    size_t len = 8 + frame->len;
    char *reply = malloc(len);
    if (reply == NULL)
        return;
    memcpy(reply, "server: ", 8);
    memcpy(reply + 8, frame->data, frame->len);
    eddy_push(srv, frame->fd, reply, len, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
    free(reply);
}

static void on_close(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    eddy_client_info_t info;
    int status = eddy_client_info(srv, fd, &info) == 0 ? info.websocket_status : 0;
    if (status)
        printf("client-%llu is closed, WebSocket status is %d\n", (unsigned long long)fd, status);
    else
        printf("client-%llu is not a valid WebSocket connection\n", (unsigned long long)fd);
}

static void on_disconnect(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    printf("client-%llu is Disconnect\n", (unsigned long long)fd);
}

static void on_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                       void *user_data)
{
    if (eddy_request_get(req, "close") != NULL) {
        eddy_response_close(resp);
        return;
    }
    eddy_response_end(resp, "http ok", 7);
}

static const example_spec_t spec = {
    .name = "seed_disconnect",
    .summary = "Prints close and disconnect events and websocket_status (seed 000).",
    .options =
        (const example_option_spec_t[]){
            {"--no-disconnect", NULL, "leave the disconnect callback unset"}, {NULL, NULL, NULL}},
};

int main(int argc, char **argv)
{
    eddy_server_t *srv = example_new(argc, argv, &spec);
    eddy_on_open(srv, on_open);
    eddy_on_message(srv, on_message);
    eddy_on_close(srv, on_close);
    eddy_on_request(srv, on_request);
    if (!example_has_flag(argc, argv, "--no-disconnect"))
        eddy_on_disconnect(srv, on_disconnect);
    return example_run(srv);
}
