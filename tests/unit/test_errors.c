/* SPDX-License-Identifier: MIT */
/*
 * eddy_strerror: every eddy status code has its own description, and errno values get the
 * system's text. The error codes form one contiguous range from EDDY_AGAIN down to
 * EDDY_EDROPPED; everything else in the eddy range is an unknown code.
 */
#include <errno.h>

#include "eddy.h"
#include "test.h"

static const int codes[] = {
    EDDY_OK,        EDDY_QUEUED, EDDY_PENDING,  EDDY_AGAIN,       EDDY_EINVAL,   EDDY_ENOMEM,
    EDDY_ENOTFOUND, EDDY_ESTATE, EDDY_ETOOBIG,  EDDY_EPROTO,      EDDY_EUTF8,    EDDY_ECLOSED,
    EDDY_EKEY,      EDDY_EVALUE, EDDY_ERUNNING, EDDY_ENOCALLBACK, EDDY_EDROPPED,
};

static bool is_code(int v)
{
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (codes[i] == v)
            return true;
    }
    return false;
}

int main(void)
{
    const char *unknown = eddy_strerror(-4999);
    CHECK(unknown != NULL && strstr(unknown, "unknown") != NULL);

    /* Successes are EDDY_OK and the statuses EDDY_QUEUED and EDDY_PENDING; every other
     * code is an error, negative, so `rc < 0` is the failure test for every function. */
    CHECK_EQ_INT(EDDY_OK, 0);
    CHECK(EDDY_QUEUED > 0);
    CHECK(EDDY_PENDING > 0);
    for (size_t i = 3; i < sizeof(codes) / sizeof(codes[0]); i++)
        CHECK(codes[i] < 0);

    /* Each code: a text of its own, never the unknown one. */
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *text = eddy_strerror(codes[i]);
        CHECK(text != NULL && *text != '\0');
        if (text == NULL)
            continue;
        if (strcmp(text, unknown) == 0 || strncmp(text, "Unknown error", 13) == 0)
            fprintf(stderr, "code %d: \"%s\"\n", codes[i], text);
        CHECK(strcmp(text, unknown) != 0 && strncmp(text, "Unknown error", 13) != 0);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(text, eddy_strerror(codes[j])) != 0);
    }
    /* The codes are contiguous: EDDY_AGAIN .. EDDY_EDROPPED, and nothing else in the eddy
     * range has a text (so the list above is the whole enum). */
    CHECK_EQ_INT(EDDY_EDROPPED, EDDY_AGAIN - (int)(sizeof(codes) / sizeof(codes[0])) + 4);
    for (int v = -3000; v > -3100; v--) {
        if (!is_code(v))
            CHECK_STR(eddy_strerror(v), unknown);
    }
    CHECK_STR(eddy_strerror(3), unknown);

    /* errno values: the system's description. */
    CHECK_STR(eddy_strerror(-EPIPE), "Broken pipe");
    CHECK_STR(eddy_strerror(-ECONNRESET), "Connection reset by peer");
    CHECK_STR(eddy_strerror(-EADDRINUSE), "Address already in use");
    /* A negative value in the errno range that no errno has. */
    CHECK_STR(eddy_strerror(-2999), unknown);
    /* Every error is one a public function returns: EDDY_EUTF8 is eddy_disconnect()'s
     * answer to a reason that is not UTF-8 (arguments are checked before the id). */
    eddy_server_t *srv = eddy_server_new("127.0.0.1", 0);
    CHECK(srv != NULL);
    if (srv != NULL) {
        CHECK_EQ_INT(eddy_disconnect(srv, 1, 1000, "bad \xff"), EDDY_EUTF8);
        CHECK_EQ_INT(eddy_disconnect(srv, 1, 1000, "\xed\xa0\x80"), EDDY_EUTF8); /* surrogate */
        CHECK_EQ_INT(eddy_disconnect(srv, 1, 999, "fine"), EDDY_EINVAL);
        CHECK_EQ_INT(eddy_disconnect(srv, 1, 1000, "fine"), EDDY_ENOTFOUND);
        eddy_server_free(srv);
    }
    return test_report("test_errors");
}
