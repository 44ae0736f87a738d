/* SPDX-License-Identifier: MIT */
/*
 * A full disk is bad input: with log_file and http_access_log on /dev/full (every write
 * fails with ENOSPC) the server still answers, counts the lines lost in its stats, says so
 * once on the warning descriptor per log, and once the files take writes again (another
 * file put under their descriptors, or eddy_server_reopen_logs() after a rotation) logs
 * how many lines were lost meanwhile.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "eddy.h"
#include "test.h"
#include "test_server.h"
#include "wait_for.h"

/* Lines of path that contain needle. */
static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char buf[1024];
    int n = 0;
    while (fgets(buf, sizeof(buf), f) != NULL)
        n += strstr(buf, needle) != NULL;
    fclose(f);
    return n;
}

/* The number after needle on the first line of path that has it, or -1. */
static long long number_after(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char buf[1024];
    long long n = -1;
    while (n < 0 && fgets(buf, sizeof(buf), f) != NULL) {
        const char *at = strstr(buf, needle);
        if (at != NULL)
            n = strtoll(at + strlen(needle), NULL, 10);
    }
    fclose(f);
    return n;
}

static eddy_stats_t stats(void)
{
    eddy_stats_t st;
    eddy_server_stats(test_server, -1, &st);
    return st;
}

/* Waits up to 3 s until the server's lost access log lines reach want. */
static bool access_lost_reaches(uint64_t want)
{
    for (int waited_ms = 0; waited_ms < 3000; waited_ms += 5) {
        if (stats().access_log_lines_lost_total >= want)
            return true;
        struct timespec ms = {.tv_nsec = 5000000L};
        nanosleep(&ms, NULL);
    }
    return false;
}

/* Puts file over every descriptor of this process open on /dev/full (the server's log
 * and access log), as a reopen puts a new file in place of a failing one. */
static int replace_dev_full(const char *file)
{
    int fd = open(file, O_WRONLY | O_APPEND | O_CLOEXEC);
    int replaced = 0;
    for (int i = 3; i < 1024 && fd >= 0; i++) {
        char link[64], target[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", i);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n <= 0 || i == fd)
            continue;
        target[n] = '\0';
        if (strcmp(target, "/dev/full") == 0 && dup2(fd, i) == i)
            replaced++;
    }
    if (fd >= 0)
        close(fd);
    return replaced;
}

static void test_logs_on_a_full_disk(void)
{
    char warnings[] = "/tmp/eddy-test-warn-XXXXXX", logs[] = "/tmp/eddy-test-logs-XXXXXX";
    int warning_fd = mkstemp(warnings), logs_fd = mkstemp(logs);
    CHECK(warning_fd >= 0 && logs_fd >= 0);
    close(logs_fd);
    if (!test_server_new("info"))
        return;
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "2"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "log_file", "/dev/full"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "http_access_log", "/dev/full"), 0);
    eddy_log_warning_fd(test_server, warning_fd);
    int rc = -1;
    pthread_t thread;
    test_start_server(&thread, &rc);

    /* Served while every log line is lost, on both loops. */
    for (int i = 0; i < 6; i++)
        CHECK(test_http_answered(eddy_server_port(test_server)));
    for (int i = 0; i < 3; i++)
        eddy_log(test_server, EDDY_LOG_NOTICE, "lost line %d", i);
    CHECK(access_lost_reaches(6));
    eddy_stats_t st = stats();
    CHECK_EQ_INT(st.access_log_lines_lost_total, 6);
    /* "listening on", the three above, and no more than the loops' own lines. */
    CHECK(st.log_lines_lost_total >= 4);
    /* eddy_log_write() fails and counts the same way. */
    struct iovec line[2] = {{"written by ", 11}, {"hand\n", 5}};
    CHECK_EQ_INT(eddy_log_write(test_server, line, 2), -ENOSPC);
    CHECK_EQ_INT(stats().log_lines_lost_total, st.log_lines_lost_total + 1);
    CHECK_EQ_INT(eddy_log_write(test_server, line, 0), EDDY_EINVAL);
    /* Each log told once, whatever the number of failures. */
    CHECK_EQ_INT(count_lines(warnings, "\tWARNING\twrites to the log /dev/full fail (No space "
                                       "left on device): its lines are lost"),
                 1);
    CHECK_EQ_INT(count_lines(warnings, "\tWARNING\twrites to the http_access_log /dev/full fail "
                                       "(No space left on device)"),
                 1);
    CHECK_EQ_INT(count_lines(warnings, "\n"), 2);

    /* Writable again: the first line that gets through is followed by the count. */
    CHECK_EQ_INT(replace_dev_full(logs), 2);
    st = stats();
    eddy_log(test_server, EDDY_LOG_NOTICE, "written again");
    CHECK_EQ_INT(count_lines(logs, "\tNOTICE\twritten again"), 1);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "\tWARNING\tthe log %s is written again: ", logs);
    CHECK_EQ_INT(number_after(logs, want), (long long)st.log_lines_lost_total);
    CHECK(count_lines(logs, "lines were lost while writes failed (No space left on device)") == 1);
    CHECK(test_http_answered(eddy_server_port(test_server)));
    snprintf(want, sizeof(want), "\tWARNING\tthe http_access_log %s is written again: ", logs);
    WAIT_FOR(number_after(logs, want) >= 0, 3000);
    CHECK_EQ_INT(number_after(logs, want), 6);
    CHECK_EQ_INT(count_lines(logs, "\"GET / HTTP/1.1\" "), 1);
    /* Counters never go back; nothing more was lost, nothing more told. */
    CHECK_EQ_INT(stats().access_log_lines_lost_total, 6);
    CHECK_EQ_INT(stats().log_lines_lost_total, st.log_lines_lost_total);
    CHECK_EQ_INT(count_lines(warnings, "\n"), 2);

    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    eddy_server_free(test_server);
    close(warning_fd);
    unlink(warnings);
    unlink(logs);
}

/* logrotate's create mode over a failing log: log_file and http_access_log are links to
 * /dev/full; a new regular file takes each name and eddy_server_reopen_logs() moves the
 * logs there, where the loss is counted. A name that cannot be opened leaves the log on
 * its old file. */
static void test_reopen_after_failure(void)
{
    char dir[] = "/tmp/eddy-test-reopen-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char log_path[PATH_MAX], access_path[PATH_MAX], old_path[PATH_MAX];
    snprintf(log_path, sizeof(log_path), "%s/eddy.log", dir);
    snprintf(access_path, sizeof(access_path), "%s/access.log", dir);
    snprintf(old_path, sizeof(old_path), "%s/access.log.1", dir);
    CHECK(symlink("/dev/full", log_path) == 0 && symlink("/dev/full", access_path) == 0);
    if (!test_server_new("info"))
        return;
    CHECK_EQ_INT(eddy_server_set(test_server, "log_file", log_path), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "http_access_log", access_path), 0);
    eddy_log_warning_fd(test_server, -1);
    int rc = -1;
    pthread_t thread;
    test_start_server(&thread, &rc);
    for (int i = 0; i < 3; i++)
        CHECK(test_http_answered(eddy_server_port(test_server)));
    CHECK(access_lost_reaches(3));
    uint64_t log_lost = stats().log_lines_lost_total;
    CHECK(log_lost >= 1); /* "listening on" */

    /* Rotated: the links give way to files. */
    CHECK(unlink(log_path) == 0 && rename(access_path, old_path) == 0);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0);
    close(fd);
    fd = open(access_path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0);
    close(fd);
    CHECK_EQ_INT(eddy_server_reopen_logs(test_server), 0);
    eddy_log(test_server, EDDY_LOG_NOTICE, "after the reopen");
    CHECK_EQ_INT(count_lines(log_path, "\tNOTICE\tafter the reopen"), 1);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "\tWARNING\tthe log %s is written again: ", log_path);
    CHECK_EQ_INT(number_after(log_path, want), (long long)log_lost);
    CHECK(test_http_answered(eddy_server_port(test_server)));
    snprintf(want, sizeof(want),
             "\tWARNING\tthe http_access_log %s is written again: ", access_path);
    WAIT_FOR(number_after(log_path, want) >= 0, 3000);
    CHECK_EQ_INT(number_after(log_path, want), 3);
    CHECK_EQ_INT(count_lines(access_path, "\"GET / HTTP/1.1\" "), 1);
    CHECK_EQ_INT(stats().access_log_lines_lost_total, 3);

    /* A name that cannot be opened: an error, and the log keeps its file. */
    CHECK(unlink(access_path) == 0 && mkdir(access_path, 0755) == 0);
    CHECK_EQ_INT(eddy_server_reopen_logs(test_server), -EISDIR);
    CHECK(count_lines(log_path, "\tERROR\tcannot reopen http_access_log ") == 1);
    CHECK(test_http_answered(eddy_server_port(test_server)));

    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    eddy_server_free(test_server);
    rmdir(access_path);
    unlink(old_path);
    unlink(log_path);
    rmdir(dir);
}

/* Puts a copy of fd over the server's log_file descriptor, found by the start of its
 * path: the highest such descriptor, as the test opens its own before the server starts. */
static bool replace_log(const char *log_path, int fd)
{
    for (int i = 1023; i > fd; i--) {
        char link[64], target[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", i);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strncmp(target, log_path, strlen(log_path)) == 0)
            return dup2(fd, i) == i;
    }
    return false;
}

/* A log that fails, recovers and fails again on the same file within the minute is not
 * told again (a disk on the edge of full would say so at every line), but each recovery
 * is counted; another failing file is told at once. */
static void test_failing_again_is_rate_limited(void)
{
    char warnings[] = "/tmp/eddy-test-warn-XXXXXX", logs[] = "/tmp/eddy-test-logs-XXXXXX";
    int warning_fd = mkstemp(warnings), logs_fd = mkstemp(logs);
    CHECK(warning_fd >= 0 && logs_fd >= 0);
    if (!test_server_new("info"))
        return;
    CHECK_EQ_INT(eddy_server_set(test_server, "log_file", logs), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "1"), 0);
    eddy_log_warning_fd(test_server, warning_fd);
    int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
    int pipe_fds[2];
    CHECK(full >= 0 && pipe(pipe_fds) == 0);
    signal(SIGPIPE, SIG_IGN);
    int rc = -1;
    pthread_t thread;
    test_start_server(&thread, &rc); /* opens log_file, above the test's descriptors */
    close(pipe_fds[0]);              /* writes to pipe_fds[1] fail with EPIPE */
    for (int round = 1; round <= 3; round++) {
        CHECK(replace_log(logs, full));
        for (int i = 0; i < round; i++)
            eddy_log(test_server, EDDY_LOG_NOTICE, "lost");
        CHECK(replace_log("/dev/full", logs_fd));
        eddy_log(test_server, EDDY_LOG_NOTICE, "back");
    }
    CHECK_EQ_INT(count_lines(warnings, "\n"), 1);
    CHECK_EQ_INT(count_lines(logs, "\tNOTICE\tback"), 3);
    CHECK_EQ_INT(count_lines(logs, " is written again: 1 lines were lost"), 1);
    CHECK_EQ_INT(count_lines(logs, " is written again: 2 lines were lost"), 1);
    CHECK_EQ_INT(count_lines(logs, " is written again: 3 lines were lost"), 1);
    eddy_stats_t st;
    eddy_server_stats(test_server, -1, &st);
    CHECK_EQ_INT(st.log_lines_lost_total, 6);
    /* Another file fails: told at once. */
    CHECK(replace_log(logs, pipe_fds[1]));
    eddy_log(test_server, EDDY_LOG_NOTICE, "lost");
    CHECK_EQ_INT(count_lines(warnings, "fail (Broken pipe): its lines are lost"), 1);
    CHECK_EQ_INT(count_lines(warnings, "\n"), 2);
    CHECK(replace_log("pipe:", logs_fd)); /* for the stop's lines */
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    eddy_server_free(test_server);
    signal(SIGPIPE, SIG_DFL);
    close(full);
    close(pipe_fds[1]);
    close(logs_fd);
    close(warning_fd);
    unlink(warnings);
    unlink(logs);
}

int main(void)
{
    test_logs_on_a_full_disk();
    test_reopen_after_failure();
    test_failing_again_is_rate_limited();
    return test_report("test_log_full");
}
