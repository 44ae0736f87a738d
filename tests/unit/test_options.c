/* SPDX-License-Identifier: MIT */
/*
 * Typed settings: eddy_options_init() gives a new server's settings, the string keys and
 * eddy_server_configure() set the same things, eddy_server_get_options() reports the
 * effective values (derived defaults included), and a bad typed value changes nothing.
 */
#include <unistd.h>

#include "eddy.h"
#include "test.h"

/* Every key, set to something other than its default, as strings... */
static const char *const keys[][2] = {
    {"worker_num", "3"},
    {"task_worker_num", "2"},
    {"enable_reuse_port", "true"},
    {"socket_buffer_size", "100000"},
    {"buffer_high_watermark", "50000"},
    {"buffer_low_watermark", "1000"},
    {"slow_consumer_policy", "drop"},
    {"socket_buffer_soft_limit", "20000"},
    {"socket_buffer_soft_seconds", "5"},
    {"max_connection", "77"},
    {"backlog", "12"},
    {"open_tcp_nodelay", "false"},
    {"package_max_length", "4096"},
    {"heartbeat_check_interval", "1.5"},
    {"heartbeat_idle_time", "4.25"},
    {"websocket_subprotocol", "chat,superchat"},
    {"websocket_origins", "https://a.example,https://b.example"},
    {"open_websocket_close_frame", "yes"},
    {"open_websocket_ping_frame", "on"},
    {"open_websocket_pong_frame", "1"},
    {"websocket_close_timeout", "0.5"},
    {"websocket_ping_interval", "2.5"},
    {"websocket_ping_timeout", "6"},
    {"http_header_timeout", "2"},
    {"http_body_timeout", "3.5"},
    {"http_keepalive_timeout", "7"},
    {"websocket_upgrade_timeout", "8.5"},
    {"http_max_header_size", "1024"},
    {"websocket_compression", "true"},
    {"websocket_compression_threshold", "64"},
    {"websocket_compression_level", "3"},
    {"websocket_compression_mem_level", "4"},
    {"websocket_compression_window_bits", "10"},
    {"websocket_compression_client_window_bits", "9"},
    {"websocket_compression_server_no_context_takeover", "true"},
    {"websocket_compression_client_no_context_takeover", "true"},
    {"ssl_cert_file", "/nonexistent/cert.pem"},
    {"ssl_key_file", "/nonexistent/key.pem"},
    {"ssl_ciphers", "HIGH"},
    {"ssl_protocols", "TLSv1.3"},
    {"log_level", "error"},
    {"log_file", "/nonexistent/eddy.log"},
    {"http_access_log", "/nonexistent/access.log"},
};

/* ... and typed. */
static void typed(eddy_options_t *o)
{
    eddy_options_init(o);
    o->worker_num = 3;
    o->task_worker_num = 2;
    o->enable_reuse_port = true;
    o->socket_buffer_size = 100000;
    o->buffer_high_watermark = 50000;
    o->buffer_low_watermark = 1000;
    o->slow_consumer_policy = EDDY_SLOW_CONSUMER_DROP;
    o->socket_buffer_soft_limit = 20000;
    o->socket_buffer_soft_seconds = 5;
    o->max_connection = 77;
    o->backlog = 12;
    o->open_tcp_nodelay = false;
    o->package_max_length = 4096;
    o->heartbeat_check_interval_ms = 1500;
    o->heartbeat_idle_time_ms = 4250;
    o->websocket_subprotocol = "chat,superchat";
    o->websocket_origins = "https://a.example,https://b.example";
    o->open_websocket_close_frame = true;
    o->open_websocket_ping_frame = true;
    o->open_websocket_pong_frame = true;
    o->websocket_close_timeout_ms = 500;
    o->websocket_ping_interval_ms = 2500;
    o->websocket_ping_timeout_ms = 6000;
    o->http_header_timeout_ms = 2000;
    o->http_body_timeout_ms = 3500;
    o->http_keepalive_timeout_ms = 7000;
    o->websocket_upgrade_timeout_ms = 8500;
    o->http_max_header_size = 1024;
    o->websocket_compression = true;
    o->websocket_compression_threshold = 64;
    o->websocket_compression_level = 3;
    o->websocket_compression_mem_level = 4;
    o->websocket_compression_window_bits = 10;
    o->websocket_compression_client_window_bits = 9;
    o->websocket_compression_server_no_context_takeover = true;
    o->websocket_compression_client_no_context_takeover = true;
    o->ssl_cert_file = "/nonexistent/cert.pem";
    o->ssl_key_file = "/nonexistent/key.pem";
    o->ssl_ciphers = "HIGH";
    o->ssl_protocols = "TLSv1.3";
    o->log_level = EDDY_LOG_ERROR;
    o->log_file = "/nonexistent/eddy.log";
    o->http_access_log = "/nonexistent/access.log";
}

static bool same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Field-by-field equality: strings by content, the rest by value. */
static bool same_options(eddy_options_t a, eddy_options_t b)
{
    const char **strings_a[] = {
        &a.websocket_subprotocol, &a.websocket_origins, &a.ssl_cert_file, &a.ssl_key_file,
        &a.ssl_ciphers,           &a.ssl_protocols,     &a.log_file,      &a.http_access_log};
    const char **strings_b[] = {
        &b.websocket_subprotocol, &b.websocket_origins, &b.ssl_cert_file, &b.ssl_key_file,
        &b.ssl_ciphers,           &b.ssl_protocols,     &b.log_file,      &b.http_access_log};
    for (size_t i = 0; i < sizeof(strings_a) / sizeof(strings_a[0]); i++) {
        if (!same_string(*strings_a[i], *strings_b[i]))
            return false;
        *strings_a[i] = *strings_b[i] = NULL;
    }
    /* Both were filled by eddy (padding zeroed) or copied from such a struct. */
    return memcmp(&a, &b, sizeof(a)) == 0;
}

/* eddy_server_configure() refuses opts with field set to value. */
#define CHECK_REFUSED(srv, opts, field, value)                                                     \
    do {                                                                                           \
        eddy_options_t bad = (opts);                                                               \
        bad.field = (value);                                                                       \
        CHECK_EQ_INT(eddy_server_configure((srv), &bad), EDDY_EVALUE);                             \
    } while (0)

static eddy_server_t *new_server(void)
{
    eddy_server_t *srv = eddy_server_new("127.0.0.1", 0);
    CHECK(srv != NULL);
    if (srv == NULL)
        exit(test_report("test_options"));
    return srv;
}

int main(void)
{
    /* Defaults: what a new server has, with the derived ones resolved by the getter. */
    eddy_options_t defaults, got;
    eddy_options_init(&defaults);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK_EQ_INT(defaults.worker_num, cores < 1 ? 1 : cores > 256 ? 256 : cores);
    CHECK_EQ_INT(defaults.buffer_high_watermark, 0);
    CHECK_EQ_INT(defaults.socket_buffer_size, 8 * 1024 * 1024);
    CHECK_EQ_INT(defaults.http_header_timeout_ms, 10000);
    CHECK_EQ_INT(defaults.http_body_timeout_ms, 60000);
    CHECK_EQ_INT(defaults.log_level, EDDY_LOG_INFO);
    CHECK_EQ_INT(defaults.slow_consumer_policy, EDDY_SLOW_CONSUMER_CLOSE);
    CHECK(defaults.log_file == NULL && defaults.ssl_protocols == NULL);
    eddy_server_t *fresh = new_server();
    eddy_server_get_options(fresh, &got);
    CHECK_EQ_INT(got.buffer_high_watermark, 8 * 1024 * 1024 / 10 * 8); /* derived */
    got.buffer_high_watermark = 0;
    CHECK(same_options(got, defaults));

    /* Derived heartbeat: the idle time defaults to twice the interval. */
    CHECK_EQ_INT(eddy_server_set(fresh, "heartbeat_check_interval", "1.5"), 0);
    CHECK_EQ_INT(eddy_server_set(fresh, "socket_buffer_size", "1000000"), 0);
    eddy_server_get_options(fresh, &got);
    CHECK_EQ_INT(got.heartbeat_check_interval_ms, 1500);
    CHECK_EQ_INT(got.heartbeat_idle_time_ms, 3000);
    CHECK_EQ_INT(got.buffer_high_watermark, 800000);
    /* Derived values are not stored: a new interval derives a new idle time. */
    CHECK_EQ_INT(eddy_server_set(fresh, "heartbeat_check_interval", "2"), 0);
    eddy_server_get_options(fresh, &got);
    CHECK_EQ_INT(got.heartbeat_idle_time_ms, 4000);
    eddy_server_free(fresh);

    /* The string keys and the typed struct set the same settings. */
    eddy_server_t *by_string = new_server(), *by_type = new_server();
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        CHECK_EQ_INT(eddy_server_set(by_string, keys[i][0], keys[i][1]), 0);
    eddy_options_t want, from_string, from_type;
    typed(&want);
    CHECK_EQ_INT(eddy_server_configure(by_type, &want), 0);
    eddy_server_get_options(by_string, &from_string);
    eddy_server_get_options(by_type, &from_type);
    CHECK(same_options(from_string, from_type));
    CHECK(same_options(from_type, want));             /* nothing derived: every value was set */
    CHECK(from_type.ssl_ciphers != want.ssl_ciphers); /* copied, not borrowed */

    /* A value out of bounds changes nothing. */
    eddy_server_set(by_type, "log_level", "none"); /* quiet: the refusals below are logged */
    eddy_server_get_options(by_type, &want);
    CHECK_REFUSED(by_type, want, worker_num, 0);
    CHECK_REFUSED(by_type, want, http_header_timeout_ms, 3600 * 1000 + 1);
    CHECK_REFUSED(by_type, want, websocket_compression_window_bits, 8);
    CHECK_REFUSED(by_type, want, log_level, -1);
    CHECK_REFUSED(by_type, want, log_level, 7);
    CHECK_REFUSED(by_type, want, slow_consumer_policy, -1);
    CHECK_REFUSED(by_type, want, slow_consumer_policy, 2);
    CHECK_REFUSED(by_type, want, package_max_length, 0);
    CHECK_REFUSED(by_type, want, socket_buffer_soft_seconds, 3601);
    CHECK_REFUSED(by_type, want, websocket_ping_timeout_ms, 86400 * 1000 + 1);
    CHECK_EQ_INT(eddy_server_configure(by_type, NULL), EDDY_EINVAL);
    eddy_server_get_options(by_type, &got);
    CHECK(same_options(got, want));

    /* What the getter reports can be applied back unchanged; NULL strings unset. */
    CHECK_EQ_INT(eddy_server_configure(by_string, &got), 0);
    eddy_server_get_options(by_string, &from_string);
    CHECK(same_options(from_string, got));
    eddy_options_init(&defaults);
    defaults.log_level = EDDY_LOG_TRACE; /* every level, the most verbose included */
    CHECK_EQ_INT(eddy_server_configure(by_string, &defaults), 0);
    defaults.log_level = EDDY_LOG_NONE;
    CHECK_EQ_INT(eddy_server_configure(by_string, &defaults), 0);
    eddy_server_get_options(by_string, &got);
    CHECK(got.ssl_cert_file == NULL && got.log_file == NULL && got.http_access_log == NULL);
    eddy_server_free(by_string);
    eddy_server_free(by_type);
    return test_report("test_options");
}
