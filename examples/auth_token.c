/* SPDX-License-Identifier: MIT */
/*
 * auth_token: validating clients at connect time (seed 002). A client connects with
 * ?uid=U&token=T where T = md5(md5(U) . key). The seed checks in onOpen and closes the
 * connection it just accepted; here the upgrade callback refuses others before the
 * handshake, with 403 and a reason, so they never open.
 * Heartbeat: a check every 30 s closes connections idle for 62 s (--set
 * heartbeat_check_interval=N and --set heartbeat_idle_time=N override them).
 */
#include <openssl/evp.h>

#include "example.h"

static const char auth_key[] = "^www.lulublog.cn&swoole$";

/* Lower-case hex MD5 of data, as PHP's md5(). */
static void md5_hex(const void *data, size_t len, char out[33])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    EVP_Digest(data, len, digest, &digest_len, EVP_md5(), NULL);
    for (unsigned int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

static int token_valid(const char *uid, const char *token)
{
    char inner[33], outer[33];
    md5_hex(uid, strlen(uid), inner);
    char material[33 + sizeof(auth_key)];
    snprintf(material, sizeof(material), "%s%s", inner, auth_key);
    md5_hex(material, strlen(material), outer);
    return strcmp(outer, token) == 0;
}

static int on_upgrade(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    const char *uid = eddy_request_get(req, "uid");
    const char *token = eddy_request_get(req, "token");
    if (uid != NULL && token != NULL && token_valid(uid, token))
        return 0;
    return eddy_upgrade_refuse(req, 403, NULL, "invalid uid or token\n");
}

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    size_t len = 8 + frame->len;
    char *reply = malloc(len);
    if (reply == NULL)
        return;
    memcpy(reply, "Server: ", 8);
    memcpy(reply + 8, frame->data, frame->len);
    eddy_push(srv, frame->fd, reply, len, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
    free(reply);
}

static void on_close(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    printf("client %llu closed.\n", (unsigned long long)fd);
}

static const example_spec_t spec = {
    .name = "auth_token",
    .summary = "Refuses WebSocket upgrades whose ?uid=U&token=T does not match (seed 002).",
    .settings = (const example_setting_t[]){{"worker_num", "1"},
                                            {"heartbeat_check_interval", "30"},
                                            {"heartbeat_idle_time", "62"},
                                            {NULL, NULL}},
};

int main(int argc, char **argv)
{
    eddy_server_t *srv = example_new(argc, argv, &spec);
    eddy_on_upgrade(srv, on_upgrade);
    eddy_on_message(srv, on_message);
    eddy_on_close(srv, on_close);
    return example_run(srv);
}
