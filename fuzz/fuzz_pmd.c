/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for the permessage-deflate offer parser (src/deflate.c).
 *
 * Checked invariants:
 * - a Sec-WebSocket-Extensions value of any bytes never crashes the negotiation;
 * - an accepted offer yields windows within RFC 7692's ranges (server 9-15, as zlib needs;
 *   client 8-15) and never larger than the configuration allows;
 * - the response always fits and always names the extension, and negotiating the
 *   response again (a server echoing itself) is accepted with the same agreement;
 * - client_max_window_bits is answered only if the offer had it.
 */
#include <string.h>
#include <strings.h>

#include "deflate.h"
#include "fuzz.h"

/* Case-insensitive search in bytes that may hold NULs. */
static bool contains(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++) {
        if (strncasecmp(hay + i, needle, n) == 0 && memchr(hay + i, '\0', n) == NULL)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* The first byte picks a configuration, the rest is the header value. */
    uint8_t knobs = data[0];
    eddy__pmd_config_t cfg = {
        .server_window_bits = (uint8_t)(9 + (knobs & 7) % 7),
        .client_window_bits = (uint8_t)(8 + ((knobs >> 3) & 7)),
        .server_no_context_takeover = (knobs & 0x40) != 0,
        .client_no_context_takeover = (knobs & 0x80) != 0,
    };
    const char *value = (const char *)data + 1;
    size_t len = size - 1;
    eddy__pmd_t pmd;
    if (!eddy__pmd_negotiate(value, len, &cfg, &pmd))
        return 0;
    FUZZ_CHECK(pmd.server_window_bits >= 9 && pmd.server_window_bits <= cfg.server_window_bits);
    FUZZ_CHECK(pmd.client_window_bits >= 8 && pmd.client_window_bits <= 15);
    FUZZ_CHECK(!pmd.announce_client_bits || pmd.client_window_bits <= cfg.client_window_bits);
    if (cfg.server_no_context_takeover)
        FUZZ_CHECK(pmd.server_no_context_takeover);
    if (cfg.client_no_context_takeover)
        FUZZ_CHECK(pmd.client_no_context_takeover);
    if (pmd.announce_client_bits)
        FUZZ_CHECK(contains(value, len, "client_max_window_bits"));
    char response[200];
    int n = eddy__pmd_response(&pmd, response, sizeof(response));
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(response));
    FUZZ_CHECK(strncmp(response, "permessage-deflate", 18) == 0);
    eddy__pmd_t again;
    FUZZ_CHECK(eddy__pmd_negotiate(response, (size_t)n, &cfg, &again));
    FUZZ_CHECK(again.server_window_bits == pmd.server_window_bits);
    FUZZ_CHECK(again.server_no_context_takeover == pmd.server_no_context_takeover);
    FUZZ_CHECK(again.client_no_context_takeover == pmd.client_no_context_takeover);
    return 0;
}
