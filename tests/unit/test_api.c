/* SPDX-License-Identifier: MIT */
/*
 * Public API shapes: the signatures a user compiles against (this file fails to build
 * with -Werror if they regress) and eddy_version().
 */
#include <stdio.h>

#include "eddy.h"
#include "test.h"

/* The getters take a const request, as every other request getter does. */
static const char *query_param(const eddy_request_t *req)
{
    return eddy_request_get(req, "q");
}

static const char *cookie(const eddy_request_t *req)
{
    return eddy_request_cookie(req, "name");
}

/* drain has a callback type of its own. */
static void on_drain(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    (void)srv;
    (void)fd;
    (void)user_data;
}

int main(void)
{
    /* Compiled, not run: a getter taking a non-const request fails the build above. */
    (void)query_param;
    (void)cookie;

    eddy_server_t *srv = eddy_server_new("127.0.0.1", 0);
    CHECK(srv != NULL);
    if (srv != NULL) {
        eddy_drain_cb cb = on_drain;
        eddy_on_drain(srv, cb);
        eddy_server_free(srv);
    }

    /* The library's version is the header's, and the string matches the numbers. */
    CHECK_STR(eddy_version(), EDDY_VERSION_STRING);
    char numbers[32];
    snprintf(numbers, sizeof(numbers), "%d.%d.%d", EDDY_VERSION_MAJOR, EDDY_VERSION_MINOR,
             EDDY_VERSION_PATCH);
    CHECK_STR(eddy_version(), numbers);
    return test_report("test_api");
}
