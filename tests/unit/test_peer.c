/* SPDX-License-Identifier: MIT */
/* Unit tests for the compact peer address (src/util.c): eddy__peer_set() and
 * eddy__peer_format() write what inet_ntop() writes, IPv4 formatted by hand. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "test.h"
#include "util.h"

static void check_v4(uint32_t host_order, uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(host_order);
    eddy__peer_t peer;
    eddy__peer_set(&peer, (const struct sockaddr *)&sa);
    char ip[46], want[46];
    memset(ip, 'x', sizeof(ip));
    int got_port = -1;
    eddy__peer_format(&peer, ip, &got_port);
    inet_ntop(AF_INET, &sa.sin_addr, want, sizeof(want));
    CHECK_STR(ip, want);
    CHECK_EQ_INT(got_port, port);
}

static void test_ipv4(void)
{
    /* Every octet value in every position, with neighbours of every width. */
    for (uint32_t v = 0; v < 256; v++) {
        check_v4(v << 24 | 1u << 16 | 22u << 8 | 255u, (uint16_t)v);
        check_v4(9u << 24 | v << 16 | 10u << 8 | 99u, 65535);
        check_v4(100u << 24 | 0u << 16 | v << 8 | 5u, 1);
        check_v4(255u << 24 | 255u << 16 | 255u << 8 | v, 0);
    }
    check_v4(0, 0);
    check_v4(0xffffffffu, 80);
    check_v4(0x7f000001u, 8080);
}

static void test_ipv6(void)
{
    static const char *const addrs[] = {"::1",
                                        "::",
                                        "2001:db8::8a2e:370:7334",
                                        "::ffff:192.0.2.128",
                                        "fe80::1:2:3:4",
                                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"};
    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
        CHECK(inet_pton(AF_INET6, addrs[i], &sa.sin6_addr) == 1);
        eddy__peer_t peer;
        eddy__peer_set(&peer, (const struct sockaddr *)&sa);
        char ip[46];
        int port = -1;
        eddy__peer_format(&peer, ip, &port);
        CHECK_STR(ip, addrs[i]);
        CHECK_EQ_INT(port, 443);
    }
}

int main(void)
{
    test_ipv4();
    test_ipv6();
    return test_report("test_peer");
}
