/* SPDX-License-Identifier: MIT */
/*
 * Logging: eddy_log() and the log callback (levels, message, loop index, removal), the
 * log_level names and Swoole's numbers, the loop index in the line prefix, and a line
 * the callback logs itself going to the default output.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

#include "eddy.h"
#include "test.h"
#include "test_server.h"

#define MAX_LINES 256

struct line {
    int level;
    int loop;
    bool terminated; /* msg[len] was NUL and strlen(msg) == len */
    char msg[200];
};

/* Filled by the callback, from several loop threads at once. */
static pthread_mutex_t lines_lock = PTHREAD_MUTEX_INITIALIZER;
static struct line lines[MAX_LINES];
static int line_count;

static void collect(eddy_server_t *srv, int level, int loop, const char *msg, size_t len,
                    void *user_data)
{
    pthread_mutex_lock(&lines_lock);
    if (line_count < MAX_LINES) {
        struct line *l = &lines[line_count++];
        l->level = level;
        l->loop = loop;
        l->terminated = msg[len] == '\0' && strlen(msg) == len;
        snprintf(l->msg, sizeof(l->msg), "%s", msg);
    }
    pthread_mutex_unlock(&lines_lock);
    if (strcmp(msg, "log from the callback") == 0)
        eddy_log(srv, EDDY_LOG_WARNING, "logged inside the callback");
}

static void clear_lines(void)
{
    pthread_mutex_lock(&lines_lock);
    line_count = 0;
    pthread_mutex_unlock(&lines_lock);
}

/* The first collected line containing needle (a copy in *out); false if none. */
static bool find_line(const char *needle, struct line *out)
{
    bool found = false;
    pthread_mutex_lock(&lines_lock);
    for (int i = 0; i < line_count && !found; i++) {
        if (strstr(lines[i].msg, needle) != NULL) {
            *out = lines[i];
            found = true;
        }
    }
    pthread_mutex_unlock(&lines_lock);
    return found;
}

/* log_level value -> the least level that passes; each level is logged once through
 * eddy_log() and must reach the callback exactly when it passes. */
static void test_levels(void)
{
    static const struct {
        const char *value;
        int least;
    } cases[] = {
        {"trace", EDDY_LOG_TRACE},
        {"debug", EDDY_LOG_DEBUG},
        {"info", EDDY_LOG_INFO},
        {"notice", EDDY_LOG_NOTICE},
        {"warning", EDDY_LOG_WARNING},
        {"error", EDDY_LOG_ERROR},
        {"none", EDDY_LOG_NONE},
        {"TRACE", EDDY_LOG_TRACE},
        {"Debug", EDDY_LOG_DEBUG},
        /* Swoole's SWOOLE_LOG_* numbers: 0 DEBUG, 1 TRACE, 2 INFO ... 6 NONE. */
        {"0", EDDY_LOG_DEBUG},
        {"1", EDDY_LOG_TRACE},
        {"2", EDDY_LOG_INFO},
        {"3", EDDY_LOG_NOTICE},
        {"4", EDDY_LOG_WARNING},
        {"5", EDDY_LOG_ERROR},
        {"6", EDDY_LOG_NONE},
    };
    eddy_server_t *srv = eddy_server_new("127.0.0.1", 0);
    eddy_on_log(srv, collect);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_EQ_INT(eddy_server_set(srv, "log_level", cases[i].value), 0);
        clear_lines();
        for (int level = EDDY_LOG_TRACE; level <= EDDY_LOG_ERROR; level++)
            eddy_log(srv, level, "level %d of %s", level, cases[i].value);
        int expected = 0;
        for (int level = EDDY_LOG_TRACE; level <= EDDY_LOG_ERROR; level++) {
            char text[64];
            snprintf(text, sizeof(text), "level %d of %s", level, cases[i].value);
            struct line l;
            bool got = find_line(text, &l);
            if (got != (level >= cases[i].least))
                fprintf(stderr, "log_level %s, level %d: %s\n", cases[i].value, level,
                        got ? "passed" : "dropped");
            CHECK(got == (level >= cases[i].least));
            if (got) {
                expected++;
                CHECK_EQ_INT(l.level, level);
                CHECK_EQ_INT(l.loop, -1); /* not a loop thread */
                CHECK(l.terminated);
            }
        }
        CHECK_EQ_INT(line_count, expected);
    }

    /* Refused values leave the level as it was (none) and log an error, which "none"
     * drops. */
    const char *bad[] = {"7", "-1", "loud", "", "10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(eddy_server_set(srv, "log_level", bad[i]), EDDY_EVALUE);
    clear_lines();
    eddy_log(srv, EDDY_LOG_ERROR, "still none");
    CHECK_EQ_INT(line_count, 0);

    /* The message: formatted, NUL-terminated, no prefix or newline; levels outside
     * TRACE..ERROR are not lines. */
    CHECK_EQ_INT(eddy_server_set(srv, "log_level", "trace"), 0);
    clear_lines();
    eddy_log(srv, EDDY_LOG_INFO, "hello %s %d", "world", 42);
    eddy_log(srv, EDDY_LOG_NONE, "none is not a line level");
    eddy_log(srv, -1, "below trace");
    eddy_log(srv, 99, "above none");
    CHECK_EQ_INT(line_count, 1);
    CHECK_STR(lines[0].msg, "hello world 42");
    CHECK_EQ_INT(lines[0].level, EDDY_LOG_INFO);
    CHECK(lines[0].terminated);
    eddy_server_free(srv);
}

static int server_port(void)
{
    return eddy_server_port(test_server);
}

static void log_from_start(eddy_server_t *srv, void *user_data)
{
    eddy_log(srv, EDDY_LOG_INFO, "from the start callback");
    test_mark_started(srv, user_data);
}

/* Runs test_server with 2 loops: two connections, handed to loop 0 and loop 1 in turn. */
static void run_two_connections(void)
{
    int rc = -1;
    pthread_t thread;
    test_start_server(&thread, &rc);
    CHECK(test_http_answered(server_port()));
    CHECK(test_http_answered(server_port()));
    eddy_log(test_server, EDDY_LOG_INFO, "log from the callback");
    eddy_log(test_server, EDDY_LOG_NOTICE, "from an application thread");
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
}

static bool file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char buf[512];
    bool found = false;
    while (!found && fgets(buf, sizeof(buf), f) != NULL)
        found = strstr(buf, needle) != NULL;
    fclose(f);
    return found;
}

static void test_callback_on_loops(void)
{
    char path[] = "/tmp/eddy-test-log-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    if (!test_server_new("debug"))
        return;
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "2"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "log_file", path), 0);
    eddy_on_start(test_server, log_from_start);
    eddy_on_log(test_server, collect);
    clear_lines();
    run_two_connections();

    struct line l;
    CHECK(find_line("from the start callback", &l) && l.loop == 0 && l.level == EDDY_LOG_INFO);
    CHECK(find_line("from an application thread", &l) && l.loop == -1 &&
          l.level == EDDY_LOG_NOTICE);
    /* eddy's own lines, with the loop that wrote them: connections go to the loops in
     * turn, and lifecycle lines are at debug. */
    CHECK(find_line("session#1 (127.0.0.1:", &l) && strstr(l.msg, "accepted") && l.loop == 0 &&
          l.level == EDDY_LOG_DEBUG);
    CHECK(find_line("session#2 (127.0.0.1:", &l) && strstr(l.msg, "accepted") && l.loop == 1 &&
          l.level == EDDY_LOG_DEBUG);
    CHECK(find_line("session#2: HTTP connection closed", &l) && l.loop == 1);
    CHECK(find_line("listening on 127.0.0.1", &l) && l.level == EDDY_LOG_INFO && l.loop == -1);
    CHECK(find_line("eddy stopped", &l));
    /* A line the callback logs goes to the default output, not into the callback. */
    CHECK(!find_line("logged inside the callback", &l));
    char want[64];
    snprintf(want, sizeof(want), " *%d.0]\tWARNING\tlogged inside the callback", (int)getpid());
    CHECK(file_has(path, want));
    /* Nothing else reached the file: the callback replaces the default output. */
    CHECK(!file_has(path, "listening on"));

    /* Removed: lines go to log_file again, with the loop index in the prefix. */
    eddy_on_log(test_server, NULL);
    eddy_on_start(test_server, test_mark_started);
    clear_lines();
    run_two_connections();
    CHECK_EQ_INT(line_count, 0);
    CHECK(file_has(path, "\tNOTICE\tfrom an application thread"));
    snprintf(want, sizeof(want), " *%d.0]\tDEBUG\tsession#3 (127.0.0.1:", (int)getpid());
    CHECK(file_has(path, want));
    snprintf(want, sizeof(want), " *%d.1]\tDEBUG\tsession#4 (127.0.0.1:", (int)getpid());
    CHECK(file_has(path, want));
    eddy_server_free(test_server);
    unlink(path);
}

int main(void)
{
    test_levels();
    test_callback_on_loops();
    return test_report("test_log");
}
