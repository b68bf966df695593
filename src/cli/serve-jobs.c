/*
 * covct serve's automatic analysis: a thread that turns complete series
 * into jobs (covct_jobs_scan), runs each job as a child `covct analyze
 * SERIES -o RESULTS --dicom` (the same pipeline as the command line, in
 * its own process: a crash or a memory blow-up of one analysis cannot take
 * the node down), stores the DICOM results (SEG, SR, key images) so they
 * can be queried and retrieved, and sends them to the results peer.
 * docs/internals/jobs.md.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/serve.h"
#include "covct/net.h"
#include "covct/site.h"
#include "covct/store.h"

extern char **environ;

struct serve_jobs {
    serve_jobs_config cfg;
    pthread_t thread;
    atomic_bool stop;
    atomic_int child;      /* pid of the running analysis, 0 if none */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    covct_site *site; /* the case database, used by the jobs thread only */
};

static void sleep_or_stop(serve_jobs *j, double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double t = ts.tv_sec + ts.tv_nsec * 1e-9 + seconds;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    pthread_mutex_lock(&j->lock);
    if (!atomic_load(&j->stop))
        pthread_cond_timedwait(&j->wake, &j->lock, &ts);
    pthread_mutex_unlock(&j->lock);
}

/* The last non-empty line of a log file (the error of a failed run). */
static void last_line(const char *path, char *out, size_t size)
{
    snprintf(out, size, "no message (see %.400s)", path);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n)
            snprintf(out, size, "%s", line);
    }
    fclose(f);
}

/* Run `covct analyze DIR -o OUT --dicom -q` with its output in OUT.log. */
static int run_analysis(serve_jobs *j, const char *series_dir,
                        const char *out, const char *log, char *why,
                        size_t why_size)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, 1, log,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    /* The server blocks its stop signals and ignores SIGPIPE: the child
     * starts with neither. */
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    sigaddset(&def, SIGTERM);
    sigaddset(&def, SIGINT);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {(char *)j->cfg.exe, "analyze", (char *)series_dir, "-o",
                    (char *)out, "--dicom", "-q", NULL};
    pid_t pid;
    int e = posix_spawn(&pid, j->cfg.exe, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (e) {
        snprintf(why, why_size, "cannot start %s: %s", j->cfg.exe,
                 strerror(e));
        return -1;
    }
    atomic_store(&j->child, pid);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    atomic_store(&j->child, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFSIGNALED(status)) {
        snprintf(why, why_size, "the analysis was killed by signal %d%s",
                 WTERMSIG(status),
                 WTERMSIG(status) == SIGKILL ? " (out of memory?)" : "");
        return -1;
    }
    last_line(log, why, why_size);
    return -1;
}

/* One line for the log from report.json: severity and category. */
static void summary_of(const char *out, char *buf, size_t size,
                       int *severity, char *category, size_t cat_size)
{
    snprintf(buf, size, "report written");
    *severity = -1;
    category[0] = 0;
    char path[4400];
    snprintf(path, sizeof path, "%s/report.json", out);
    uint8_t *data = NULL;
    size_t len = 0;
    if (covct_file_read(path, &data, &len, NULL))
        return;
    cJSON *root = cJSON_ParseWithLength((const char *)data, len);
    covct_free(data);
    if (!root)
        return;
    const cJSON *total =
        cJSON_GetObjectItemCaseSensitive(root, "ct_severity_score");
    const cJSON *cat = cJSON_GetObjectItemCaseSensitive(root, "category");
    if (cJSON_IsString(cat))
        snprintf(category, cat_size, "%s", cat->valuestring);
    if (cJSON_IsNumber(total)) {
        *severity = total->valueint;
        snprintf(buf, size, "CT severity score %d/25, category %s",
                 total->valueint,
                 cJSON_IsString(cat) ? cat->valuestring : "?");
    }
    else
        snprintf(buf, size, "no lungs found (see report)");
    cJSON_Delete(root);
}

/* Store every DICOM result of OUT/dicom and collect their paths. */
static int import_results(serve_jobs *j, const char *out, char ***paths,
                          size_t *n, char *why, size_t why_size)
{
    *paths = NULL;
    *n = 0;
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/dicom", out);
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(why, why_size, "no DICOM results in %.400s", dir);
        return -1;
    }
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) && !rc) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 4, ".dcm") != 0)
            continue;
        char path[4700];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        uint8_t *data = NULL;
        size_t len = 0;
        covct_error err = {0};
        covct_store_result res;
        if (covct_file_read(path, &data, &len, &err) ||
            covct_store_put(j->cfg.store, data, len, j->cfg.ae, &res, NULL,
                            &err)) {
            snprintf(why, why_size, "storing %.300s: %.250s", path, err.msg);
            rc = -1;
            break;
        }
        char **p = realloc(*paths, (*n + 1) * sizeof *p);
        if (!p || !(p[*n] = strdup(path))) {
            free(p ? p : *paths);
            *paths = NULL;
            *n = 0;
            snprintf(why, why_size, "out of memory");
            rc = -1;
            break;
        }
        *paths = p;
        (*n)++;
    }
    closedir(d);
    return rc;
}

/* C-STORE the results to the results peer on one association. */
static int send_results(serve_jobs *j, char **paths, size_t n, char *why,
                        size_t why_size)
{
    const covct_net_peer *peer = j->cfg.results_peer;
    covct_net_proposal props[32];
    const char *ts_of[32][3];
    char cls[32][65], tsv[32][65];
    size_t np = 0;
    for (size_t i = 0; i < n && np < 32; i++) {
        uint8_t head[4096];
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        ssize_t got = fd >= 0 ? read(fd, head, sizeof head) : -1;
        if (fd >= 0)
            close(fd);
        char c[65], inst[65], t[65];
        size_t off;
        if (got <= 0 ||
            covct_dcm_meta_peek(head, (size_t)got, c, inst, t, &off, NULL))
            continue;
        size_t k = 0;
        while (k < np && (strcmp(cls[k], c) || strcmp(tsv[k], t)))
            k++;
        if (k < np)
            continue;
        snprintf(cls[np], sizeof cls[np], "%s", c);
        snprintf(tsv[np], sizeof tsv[np], "%s", t);
        props[np].abstract_syntax = cls[np];
        props[np].transfer_syntaxes = ts_of[np];
        props[np].n_transfer_syntaxes = covct_net_ts_choices(tsv[np], ts_of[np]);
        np++;
    }
    covct_error err = {0};
    covct_net_assoc *a = NULL;
    if (np == 0 || covct_net_connect(peer, j->cfg.ae, props, np, 30, &a,
                                     &err)) {
        snprintf(why, why_size, "sending results to %s: %.300s", peer->ae,
                 np ? err.msg : "nothing readable");
        return -1;
    }
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t *data = NULL;
        size_t len = 0;
        uint16_t st = 0xFFFF;
        covct_error_clear(&err);
        if (covct_file_read(paths[i], &data, &len, &err) ||
            covct_net_send_file(a, data, len, &st, &err) ||
            !strcmp(covct_dimse_status_kind(st), "Failure")) {
            failed++;
            if (!why[0] || failed == 1)
                snprintf(why, why_size, "%s refused %.300s: %.200s", peer->ae,
                         paths[i],
                         err.msg[0] ? err.msg : covct_dimse_status_kind(st));
        }
        covct_free(data);
        if (err.rc == COVCT_ERR_IO)
            break;
    }
    if (err.rc == COVCT_ERR_IO)
        covct_net_abort(a);
    else
        covct_net_release(a, NULL);
    return failed ? -1 : 0;
}

static void free_paths(char **p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i]);
    free(p);
}

static void run_job(serve_jobs *j, covct_job *job)
{
    double t0 = covct_now();
    char out[4200], log[4300], why[600] = "";
    snprintf(out, sizeof out, "%s/results/%s", covct_store_dir(j->cfg.store),
             job->series_uid);
    char parent[4200];
    snprintf(parent, sizeof parent, "%s/results",
             covct_store_dir(j->cfg.store));
    mkdir(parent, 0755);
    mkdir(out, 0755);
    snprintf(log, sizeof log, "%s/analyze.log", out);
    covct_log(COVCT_LOG_INFO, "job %lld: analysing series %s (attempt %u)",
              (long long)job->id, job->series_uid, job->attempts);
    char **paths = NULL;
    size_t n = 0;
    covct_store_flush(j->cfg.store); /* every file of the series written */
    bool ok = run_analysis(j, job->series_dir, out, log, why, sizeof why) ==
                  0 &&
              import_results(j, out, &paths, &n, why, sizeof why) == 0;
    bool sent = false;
    if (ok && j->cfg.results_peer) {
        ok = send_results(j, paths, n, why, sizeof why) == 0;
        sent = ok;
    }
    free_paths(paths, n);
    if (ok && j->site) {
        /* the series and the AI's masks (drafts for the readers) in the
         * case database; the analysis stands even if this fails */
        covct_error cerr = {0};
        int64_t sid = 0;
        if (covct_case_record_analysis(j->site, job->series_dir, out,
                                       "covct analyze, " COVCT_MODEL_NAME,
                                       &sid, &cerr))
            covct_log(COVCT_LOG_WARN,
                      "job %lld: not recorded in the case database: %s",
                      (long long)job->id, cerr.msg);
    }
    if (atomic_load(&j->stop) && !ok)
        return; /* stopped mid-analysis: queued again at the next start */
    char summary[200];
    int severity = -1;
    char category[32] = "";
    if (ok)
        summary_of(out, summary, sizeof summary, &severity, category,
                   sizeof category);
    covct_error err = {0};
    bool retry = false;
    /* the score first: a job seen done has its score */
    if (ok && covct_jobs_set_result(j->cfg.store, job->id, severity,
                                    category[0] ? category : NULL, &err))
        covct_log(COVCT_LOG_ERROR, "job %lld: %s", (long long)job->id,
                  err.msg);
    covct_error_clear(&err);
    if (covct_jobs_finish(j->cfg.store, job, ok, ok ? NULL : why, out,
                          j->cfg.max_attempts, j->cfg.retry_base_s, &retry,
                          &err))
        covct_log(COVCT_LOG_ERROR, "job %lld: %s", (long long)job->id,
                  err.msg);
    if (ok)
        covct_log(COVCT_LOG_INFO,
                  "job %lld: series %s done in %.1f s: %s; %zu DICOM "
                  "results stored%s%s",
                  (long long)job->id, job->series_uid, covct_now() - t0,
                  summary, n, sent ? " and sent to " : "",
                  sent ? j->cfg.results_peer->ae : "");
    else
        covct_log(retry ? COVCT_LOG_WARN : COVCT_LOG_ERROR,
                  "job %lld: series %s failed after %.1f s: %s%s",
                  (long long)job->id, job->series_uid, covct_now() - t0, why,
                  retry ? "; will retry" : "; no more attempts");
}

static void *jobs_main(void *arg)
{
    serve_jobs *j = arg;
    covct_error err = {0};
    if (covct_site_open(covct_store_dir(j->cfg.store), &j->site, &err)) {
        covct_log(COVCT_LOG_ERROR,
                  "jobs: the case database cannot be opened, analyses will "
                  "not be recorded there: %s",
                  err.msg);
        covct_error_clear(&err);
    } else {
        covct_site_set_actor(j->site, "service:analysis", "site-it");
    }
    unsigned requeued = 0;
    if (covct_jobs_recover(j->cfg.store, &requeued, &err))
        covct_log(COVCT_LOG_ERROR, "jobs: %s", err.msg);
    else if (requeued)
        covct_log(COVCT_LOG_INFO,
                  "jobs: %u analysis interrupted by the last stop queued "
                  "again",
                  requeued);
    while (!atomic_load(&j->stop)) {
        unsigned q = 0, sk = 0;
        covct_error_clear(&err);
        if (covct_jobs_scan(j->cfg.store, j->cfg.settle_s,
                            j->cfg.min_instances, &q, &sk, &err))
            covct_log(COVCT_LOG_ERROR, "jobs: %s", err.msg);
        if (sk)
            covct_log(COVCT_LOG_INFO,
                      "jobs: %u complete series skipped (not a chest CT "
                      "volume; reasons in the jobs table)",
                      sk);
        covct_job job;
        bool got = false;
        covct_error_clear(&err);
        if (covct_jobs_take(j->cfg.store, &job, &got, &err))
            covct_log(COVCT_LOG_ERROR, "jobs: %s", err.msg);
        if (got)
            run_job(j, &job);
        else
            sleep_or_stop(j, 1.0);
    }
    covct_site_close(j->site);
    j->site = NULL;
    return NULL;
}

int serve_jobs_start(const serve_jobs_config *cfg, serve_jobs **out)
{
    serve_jobs *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    j->cfg = *cfg;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->wake, NULL);
    if (pthread_create(&j->thread, NULL, jobs_main, j)) {
        free(j);
        return -1;
    }
    *out = j;
    return 0;
}

void serve_jobs_stop(serve_jobs *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->lock);
    atomic_store(&j->stop, true);
    pthread_cond_broadcast(&j->wake);
    pthread_mutex_unlock(&j->lock);
    pid_t pid = atomic_load(&j->child);
    if (pid > 0)
        kill(pid, SIGTERM);
    pthread_join(j->thread, NULL);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->wake);
    free(j);
}
