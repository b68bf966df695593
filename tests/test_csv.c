/* The CSV parser (src/govern/csv.c): RFC 4180 quoting (commas, line
 * breaks and doubled quotes inside quotes), CRLF / LF / CR, the UTF-8 byte
 * order mark, blank lines, and bad records handed over with a problem
 * that names the line and the field while the records after them still
 * come through. */
#include <string.h>

#include "covct/limits.h"
#include "covct/site.h"
#include "test.h"

#define MAX_REC 16

typedef struct got {
    size_t n;
    uint64_t line[MAX_REC];
    size_t nf[MAX_REC];
    char fields[MAX_REC][8][64];
    char problem[MAX_REC][256];
} got;

static covct_rc collect(void *user, const covct_csv_record *r,
                        covct_error *err)
{
    (void)err;
    got *g = user;
    CHECK(r->index == g->n);
    CHECK(r->n_fields >= 1);
    if (g->n == MAX_REC)
        return COVCT_OK;
    g->line[g->n] = r->line;
    g->nf[g->n] = r->n_fields;
    for (size_t i = 0; i < r->n_fields && i < 8; i++) {
        /* only a NUL byte (a problem) makes them differ */
        CHECK(r->problem || strlen(r->fields[i]) == r->lens[i]);
        snprintf(g->fields[g->n][i], 64, "%s", r->fields[i]);
    }
    snprintf(g->problem[g->n], 256, "%s", r->problem ? r->problem : "");
    g->n++;
    return COVCT_OK;
}

static got parse(const char *text, size_t len)
{
    got g;
    memset(&g, 0, sizeof g);
    covct_error err = { 0 };
    CHECKF(covct_csv_parse((const uint8_t *)text, len, collect, &g, &err) ==
               COVCT_OK,
           "%s", err.msg);
    return g;
}

#define PARSE(lit) parse((lit), sizeof(lit) - 1)

static void test_plain(void)
{
    got g = PARSE("patient_id,diagnosis\nP1,normal\nP2,other\n");
    CHECK(g.n == 3);
    CHECK(!strcmp(g.fields[0][0], "patient_id"));
    CHECK(!strcmp(g.fields[2][1], "other"));
    CHECK(g.line[0] == 1 && g.line[1] == 2 && g.line[2] == 3);
    CHECK(!g.problem[1][0] && !g.problem[2][0]);
    /* no line break at the end: the last record still counts */
    g = PARSE("a,b\n1,2");
    CHECK(g.n == 2 && !strcmp(g.fields[1][1], "2"));
    /* empty fields, and a comma at the end of a line is one more field */
    g = PARSE("a,b,c\n,,\n1,2,\n");
    CHECK(g.n == 3 && g.nf[1] == 3 && g.nf[2] == 3);
    CHECK(!g.fields[1][0][0] && !g.fields[2][2][0] && !g.problem[2][0]);
}

static void test_quotes(void)
{
    got g = PARSE("id,comment\n"
                  "P1,\"fever, cough\"\n"
                  "P2,\"said \"\"no\"\"\"\n"
                  "P3,\"two\nlines\"\n"
                  "P4,\"\"\n"
                  "P5,end\n");
    CHECK(g.n == 6);
    CHECK(!strcmp(g.fields[1][1], "fever, cough"));
    CHECK(!strcmp(g.fields[2][1], "said \"no\""));
    CHECK(!strcmp(g.fields[3][1], "two\nlines"));
    CHECK(!strcmp(g.fields[4][1], ""));
    /* lines count the line break inside the quotes */
    CHECK(g.line[3] == 4 && g.line[4] == 6 && g.line[5] == 7);
    for (size_t i = 0; i < g.n; i++)
        CHECKF(!g.problem[i][0], "record %zu: %s", i, g.problem[i]);
}

static void test_line_ends(void)
{
    got g = PARSE("a,b\r\n1,\"x\r\ny\"\r\n2,z\r\n");
    CHECK(g.n == 3 && g.line[2] == 4);
    CHECK(!strcmp(g.fields[1][1], "x\r\ny"));
    CHECK(!strcmp(g.fields[2][1], "z"));
    g = PARSE("a,b\r1,2\r3,4");
    CHECK(g.n == 3 && g.line[2] == 3 && !strcmp(g.fields[2][0], "3"));
    /* blank lines are not records, but still lines */
    g = PARSE("a,b\n\n1,2\r\n\r\n\n3,4\n\n");
    CHECK(g.n == 3 && g.line[1] == 3 && g.line[2] == 6);
}

static void test_bom_utf8(void)
{
    got g = PARSE("\xEF\xBB\xBFpatient_id,name\nP1,Gr\xC3\xBC\xC3\x9F"
                  "e \xE5\xB1\xB1\xE7\x94\xB0 \xF0\x9F\x98\x80\n");
    CHECK(g.n == 2 && !strcmp(g.fields[0][0], "patient_id"));
    CHECK(!g.problem[1][0]);
    /* Latin-1 (an Excel "CSV" in the wrong encoding) */
    g = PARSE("id,name\nP1,Gr\xFC\xDF" "e\nP2,ok\n");
    CHECK(g.n == 3 && strstr(g.problem[1], "field 2 is not valid UTF-8"));
    CHECK(strstr(g.problem[1], "0xFC"));
    CHECK(!g.problem[2][0]);
    /* overlong, surrogate, truncated */
    g = PARSE("a\n\xC0\xAF\n\xED\xA0\x80\nok\n\xE2\x82");
    CHECK(g.n == 5 && g.problem[1][0] && g.problem[2][0] &&
          !g.problem[3][0] && g.problem[4][0]);
    /* a NUL byte */
    g = parse("a,b\n1,x\0y\n2,3\n", 14);
    CHECK(g.n == 3 && strstr(g.problem[1], "NUL"));
    CHECK(!g.problem[2][0]);
}

static void test_bad_records(void)
{
    got g = PARSE("patient_id,diagnosis,severity\n"
                  "P1,normal,3\n"
                  "P2,normal\n"                 /* line 3: too few */
                  "P3,normal,4,extra\n"         /* line 4: too many */
                  "P4,sa\"id,5\n"               /* line 5: stray quote */
                  "P5,\"normal\"x,6\n"          /* line 6: after quote */
                  "P6,other,7\n");
    CHECK(g.n == 7);
    CHECK(!g.problem[1][0] && !g.problem[6][0]);
    CHECKF(g.line[2] == 3 && strstr(g.problem[2], "2 fields where the "
                                                  "header has 3"),
           "%s", g.problem[2]);
    CHECK(g.line[3] == 4 && strstr(g.problem[3], "4 fields"));
    CHECKF(g.line[4] == 5 && strstr(g.problem[4], "field 2: a quote"),
           "%s", g.problem[4]);
    CHECKF(g.line[5] == 6 && strstr(g.problem[5], "field 2: text after"),
           "%s", g.problem[5]);
    CHECK(!strcmp(g.fields[6][0], "P6") && g.line[6] == 7);
    /* a quote never closed swallows the rest: one last bad record */
    g = PARSE("a,b\n1,2\n3,\"open\n4,5\n");
    CHECK(g.n == 3 && g.line[2] == 3);
    CHECKF(strstr(g.problem[2], "opened on line 3 is never closed"), "%s",
           g.problem[2]);
}

static void test_empty(void)
{
    got g = PARSE("");
    CHECK(g.n == 0);
    g = PARSE("\xEF\xBB\xBF");
    CHECK(g.n == 0);
    g = PARSE("\n\r\n\n");
    CHECK(g.n == 0);
    g = PARSE("only_header\n");
    CHECK(g.n == 1 && g.nf[0] == 1);
    covct_error err = { 0 };
    CHECK(covct_csv_parse(NULL, 0, collect, &g, &err) == COVCT_OK);
    CHECK(covct_csv_parse(NULL, 3, collect, &g, &err) == COVCT_ERR_ARG);
}

static covct_rc stop_at_two(void *user, const covct_csv_record *r,
                            covct_error *err)
{
    (*(int *)user)++;
    if (r->index == 2)
        return COVCT_ERR(err, COVCT_ERR_ARG, "stop");
    return COVCT_OK;
}

static void test_limits_and_stop(void)
{
    /* the callback stops the parse */
    int calls = 0;
    covct_error err = { 0 };
    const char *t = "a\n1\n2\n3\n";
    CHECK(covct_csv_parse((const uint8_t *)t, strlen(t), stop_at_two,
                          &calls, &err) == COVCT_ERR_ARG);
    CHECK(calls == 3 && !strcmp(err.msg, "stop"));

    /* a field over the cap, and a record with too many fields: bad, and
     * the next record is fine */
    size_t big = COVCT_LIMIT_CSV_FIELD + 10;
    char *text = malloc(big + 64);
    int o = snprintf(text, 64, "a,b\n1,");
    memset(text + o, 'x', big);
    size_t n = (size_t)o + big;
    n += (size_t)snprintf(text + n, 64, "\n2,3\n");
    got g = parse(text, n);
    CHECK(g.n == 3 && strstr(g.problem[1], "field 2 is longer than"));
    CHECK(!g.problem[2][0] && !strcmp(g.fields[2][1], "3"));
    free(text);

    size_t nf = COVCT_LIMIT_CSV_FIELDS + 5;
    text = malloc(nf * 2 + 64);
    n = (size_t)snprintf(text, 64, "a\n");
    for (size_t i = 0; i < nf; i++)
        text[n++] = i + 1 < nf ? ',' : '\n';
    n += (size_t)snprintf(text + n, 64, "z\n");
    g = parse(text, n);
    CHECK(g.n == 3 && strstr(g.problem[1], "more than"));
    CHECK(g.nf[1] == COVCT_LIMIT_CSV_FIELDS);
    CHECK(!g.problem[2][0] && !strcmp(g.fields[2][0], "z"));
    free(text);
}

int main(void)
{
    test_plain();
    test_quotes();
    test_line_ends();
    test_bom_utf8();
    test_bad_records();
    test_empty();
    test_limits_and_stop();
    return test_report();
}
