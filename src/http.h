/* SPDX-License-Identifier: MIT */
/*
 * The HTTP/1.1 server session (http.c): requests, responses, and the upgrade hook.
 */
#ifndef EDDY_HTTP_H
#define EDDY_HTTP_H

#include "codec.h"
#include "conn.h"

/* The request being dispatched: a view of the connection's buffer, valid during the
 * callback. Strings are NUL-terminated in place or copied into the arena. */
struct eddy_request {
    eddy_server_t *srv;
    eddy__conn_t *conn;
    eddy_fd_t fd;
    char *buf; /* the first byte of the request */
    const eddy__http_head_t *head;
    const char *path;
    const char *body;
    size_t body_len;
    eddy__arena_t *arena;
    char remote_ip[46];
    int remote_port;
    /* The upgrade callback is running: eddy_upgrade_refuse() may record its answer. */
    bool in_upgrade;
    bool defer;               /* eddy_upgrade_defer() was called */
    int refuse_status;        /* 0: no answer recorded */
    char *refuse_headers;     /* "Name: value\r\n" lines, in the arena */
    bool refuse_content_type; /* refuse_headers has a Content-Type */
    const char *refuse_body;  /* in the arena */
    size_t refuse_body_len;
};

struct eddy_response {
    eddy_server_t *srv;
    eddy__conn_t *conn; /* NULL once the connection is gone (an orphaned response) */
    eddy_fd_t fd;
    int status;
    bool headers_sent;
    bool chunked; /* body sent with chunked coding (write() before end()) */
    bool finished;
    bool detached;
    bool handshake; /* the answer to an upgrade request, from the handshake callback */
    bool keep_alive;
    bool head_only; /* HEAD request: no body on the wire */
    bool has_server, has_content_type, has_date;
    int http_minor;
    char *reason;
    eddy__buf_t headers; /* "Name: value\r\n" lines set by the application */
    /* Access log: the start of the request's line (address, time, request line) until it
     * is written (then empty), when the request was dispatched, and the body bytes sent. */
    eddy__buf_t access;
    uint64_t access_start_ns;
    size_t body_bytes;
};

/* Writes the access log line of resp's request with status and resp->body_bytes, unless
 * the access log is off or the line was written already. */
void eddy__response_access_log(eddy_response_t *resp, int status);

/* Queues the status line and headers of resp (extra: headers eddy adds, already
 * formatted; body_len: Content-Length, or -1 for none). Returns 0 or EDDY_ENOMEM. */
int eddy__response_send_head(eddy_response_t *resp, const char *extra, int64_t body_len);

/* The HTTP/1.1 server session: every accepted connection starts with it. Its process()
 * stops early when the connection upgrades, pauses or closes, or when a request is
 * incomplete. */
extern const eddy__proto_t eddy__http_proto;

/* Who takes requests with "Upgrade: websocket" (srv->upgrade; ws.c provides it): the HTTP
 * session knows no more of the protocol it hands them to. */
typedef struct eddy__http_upgrade {
    /* A complete upgrade request (head parsed, body read); req and resp belong to the HTTP
     * session. It answers and calls eddy__conn_switch(), or fails the request. */
    void (*request)(eddy__conn_t *conn, eddy_request_t *req, eddy_response_t *resp);
    /* eddy_response_end() of a response whose handshake flag it set. */
    int (*end)(eddy_response_t *resp, const void *data, size_t len);
    /* A request held by eddy__http_hold() got no answer within its time: refuse it. */
    void (*expired)(eddy__conn_t *conn);
} eddy__http_upgrade_t;

/* From the upgrade hook's request(): keeps a copy of the request being dispatched for an
 * answer given later (eddy__http_resume()), pauses input (a hang-up still closes the
 * connection, which drops the copy) and arms timeout_ms (0: none) after which the hook's
 * expired() runs. Returns 0 or EDDY_ENOMEM (nothing held). */
int eddy__http_hold(eddy__conn_t *conn, uint32_t timeout_ms);

typedef void (*eddy__http_answer_cb)(eddy__conn_t *conn, eddy_request_t *req, eddy_response_t *resp,
                                     void *arg);
/* Answers the request conn holds, on its loop: the request becomes the loop's again (as
 * during its dispatch) and answer(conn, req, resp, arg) runs, as the hook's request()
 * would; if it switched protocols, the HTTP state goes and input resumes. Returns false
 * (answer not called) when conn holds no request: closing, answered or expired. */
bool eddy__http_resume(eddy__conn_t *conn, eddy__http_answer_cb answer, void *arg);

/* The current HTTP date ("Sun, 06 Nov 1994 08:49:37 GMT"), cached per second in the
 * loop (which has HTTP connections), with the access log's time field beside it. */
const char *eddy__http_date(eddy__loop_t *loop);
/* Sends a complete error response ("400 Bad Request" etc.) with a text body and closes. */
void eddy__http_fail(eddy__conn_t *conn, int status, const char *body);
/* Sends a complete response and closes: status, then headers ("Name: value\r\n" lines,
 * may be NULL) after eddy's Server and Date, a text/plain Content-Type unless
 * has_content_type (headers holds one), then body. */
void eddy__http_answer_close(eddy__conn_t *conn, int status, const char *headers,
                             bool has_content_type, const char *body, size_t body_len);
/* The request being dispatched on conn (valid during its callbacks). */
eddy_request_t *eddy__http_request(eddy__conn_t *conn);
/* True if the application set header name (lower case) on resp. */
bool eddy__response_has_header(const eddy_response_t *resp, const char *name);

#endif /* EDDY_HTTP_H */
