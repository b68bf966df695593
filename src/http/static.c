/* The pages: static files under the web folder, never outside it. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "http/http_int.h"

static const char *mime(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        { ".html", "text/html; charset=utf-8" },
        { ".css", "text/css; charset=utf-8" },
        { ".js", "text/javascript; charset=utf-8" },
        { ".mjs", "text/javascript; charset=utf-8" },
        { ".json", "application/json" },
        { ".svg", "image/svg+xml" },
        { ".png", "image/png" },
        { ".ico", "image/x-icon" },
        { ".woff2", "font/woff2" },
        { ".txt", "text/plain; charset=utf-8" },
        { ".yaml", "text/yaml; charset=utf-8" },
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof *types; i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

int static_file(http_req *rq, http_resp *rs)
{
    const char *web = rq->srv->web_dir;
    if (!web)
        return http_error(rs, 404, "no web pages on this server");
    const char *rel = rq->n_params ? rq->params[0] : "";
    size_t n = strcspn(rel, "?");
    if (n == 0) {
        rel = "index.html";
        n = strlen(rel);
    }
    /* no "..", no hidden files, no back-slashes: only plain names */
    if (n > 200 || strstr(rel, "..") || strchr(rel, '\\') || rel[0] == '.' ||
        strstr(rel, "/."))
        return http_error(rs, 404, "no such page");
    char path[PATH_MAX], real[PATH_MAX], root[PATH_MAX];
    snprintf(path, sizeof path, "%s/%.*s", web, (int)n, rel);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t l = strlen(path);
        snprintf(path + l, sizeof path - l, "/index.html");
    }
    if (!realpath(path, real) || !realpath(web, root) ||
        strncmp(real, root, strlen(root)) || real[strlen(root)] != '/')
        return http_error(rs, 404, "no such page: /%.*s", (int)n, rel);
    rs->file = covct_strdup(real);
    if (!rs->file)
        return http_error(rs, 500, "out of memory");
    rs->type = mime(real);
    rs->status = 200;
    /* pages hold no patient data; their data comes from the API */
    http_header(rs, "Cache-Control", "no-cache");
    if (strstr(rs->type, "text/html"))
        http_header(rs, "Content-Security-Policy",
                    "default-src 'self'; img-src 'self' data: blob:; "
                    "style-src 'self'; script-src 'self'; "
                    "frame-ancestors 'none'");
    return 0;
}
