/*
 * C-FIND matching over the store's index (src/store/query.c), against
 * the rules of PS3.4 C.2.2.2 on hand-made instances whose answers are
 * known by construction: universal, single value, wildcards (person names
 * case-insensitive, other strings case-sensitive), date and time ranges,
 * UID lists, Modalities in Study lists, computed counts, levels, and the
 * refusals (no level, a retrieve without its unique key).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "covct/dicom.h"
#include "covct/store.h"
#include "test.h"

typedef struct inst {
    const char *patient_id, *name, *study, *date, *time, *series, *modality,
        *sop, *desc;
} inst;

/* Two patients, three studies, four series, five instances. */
static const inst data[] = {
    {"P1", "Doe^John", "1.2.1", "20200301", "101500", "1.2.1.1", "CT",
     "1.2.1.1.1", "CHEST CT"},
    {"P1", "Doe^John", "1.2.1", "20200301", "101500", "1.2.1.1", "CT",
     "1.2.1.1.2", "CHEST CT"},
    {"P1", "Doe^John", "1.2.1", "20200301", "101500", "1.2.1.2", "SEG",
     "1.2.1.2.1", "covct"},
    {"P1", "Doe^John", "1.2.2", "20200315", "083000", "1.2.2.1", "CT",
     "1.2.2.1.1", "chest follow-up"},
    {"P2", "ROE^JANE", "1.2.3", "20210110", "231000", "1.2.3.1", "MR",
     "1.2.3.1.1", "HEAD MR"},
};

static uint8_t *make(const inst *d, size_t *len)
{
    covct_dcm_dataset *ds = covct_dcm_dataset_new();
    covct_error err = {0};
    struct {
        uint32_t tag;
        uint16_t vr;
        const char *v;
    } el[] = {
        {COVCT_TAG(0x0008, 0x0016), COVCT_VR('U', 'I'),
         "1.2.840.10008.5.1.4.1.1.2"},
        {COVCT_TAG(0x0008, 0x0018), COVCT_VR('U', 'I'), d->sop},
        {COVCT_TAG(0x0008, 0x0020), COVCT_VR('D', 'A'), d->date},
        {COVCT_TAG(0x0008, 0x0030), COVCT_VR('T', 'M'), d->time},
        {COVCT_TAG(0x0008, 0x0060), COVCT_VR('C', 'S'), d->modality},
        {COVCT_TAG(0x0008, 0x103E), COVCT_VR('L', 'O'), d->desc},
        {COVCT_TAG(0x0010, 0x0010), COVCT_VR('P', 'N'), d->name},
        {COVCT_TAG(0x0010, 0x0020), COVCT_VR('L', 'O'), d->patient_id},
        {COVCT_TAG(0x0020, 0x000D), COVCT_VR('U', 'I'), d->study},
        {COVCT_TAG(0x0020, 0x000E), COVCT_VR('U', 'I'), d->series},
    };
    for (size_t i = 0; i < sizeof el / sizeof el[0]; i++)
        covct_dcm_dataset_set_string(ds, el[i].tag, el[i].vr, el[i].v, &err);
    covct_buf b = {0};
    covct_dcm_write_buffer(ds, &b, &err);
    covct_dcm_dataset_free(ds);
    *len = b.len;
    return b.data;
}

typedef struct result {
    int n;
    char values[16][128];   /* one key's value per match */
    uint32_t key;
} result;

static covct_rc collect(void *user, covct_dcm_dataset *m, covct_error *err)
{
    (void)err;
    result *r = user;
    if (r->n < 16 && r->key)
        covct_dcm_get_string(m, r->key, 0, r->values[r->n], 128, NULL);
    r->n++;
    covct_dcm_dataset_free(m);
    return COVCT_OK;
}

/* Query with "TAG=VALUE" keys (value may be empty); returns the matches,
 * collecting the values of `want`. */
static int find(covct_store *s, bool patient_root, uint32_t want,
                result *r, const char *level, int nkeys, ...)
{
    covct_dcm_dataset *id = covct_dcm_dataset_new();
    covct_error err = {0};
    covct_dcm_dataset_set_string(id, COVCT_TAG(0x0008, 0x0052),
                                 COVCT_VR('C', 'S'), level, &err);
    va_list ap;
    va_start(ap, nkeys);
    for (int i = 0; i < nkeys; i++) {
        uint32_t tag = va_arg(ap, uint32_t);
        const char *v = va_arg(ap, const char *);
        const covct_dcm_dict_entry *d = covct_dcm_dict_lookup(tag);
        covct_dcm_dataset_set_string(id, tag, d ? d->vr : COVCT_VR('L', 'O'),
                                     v, &err);
    }
    va_end(ap);
    memset(r, 0, sizeof *r);
    r->key = want;
    covct_rc rc = covct_store_find(s, patient_root, id, collect, r, &err);
    covct_dcm_dataset_free(id);
    if (rc) {
        fprintf(stderr, "find: %s\n", err.msg);
        return -1;
    }
    return r->n;
}

#define T_NAME COVCT_TAG(0x0010, 0x0010)
#define T_PID COVCT_TAG(0x0010, 0x0020)
#define T_STUDY COVCT_TAG(0x0020, 0x000D)
#define T_DATE COVCT_TAG(0x0008, 0x0020)
#define T_TIME COVCT_TAG(0x0008, 0x0030)
#define T_SERIES COVCT_TAG(0x0020, 0x000E)
#define T_MOD COVCT_TAG(0x0008, 0x0060)
#define T_MODS COVCT_TAG(0x0008, 0x0061)
#define T_DESC COVCT_TAG(0x0008, 0x103E)
#define T_SOP COVCT_TAG(0x0008, 0x0018)
#define T_NSTUDYINST COVCT_TAG(0x0020, 0x1208)
#define T_NPATSTUDIES COVCT_TAG(0x0020, 0x1200)

static covct_rc count_instance(void *user, const char *path,
                               const char *cls, const char *sop,
                               covct_error *err)
{
    (void)cls;
    (void)sop;
    (void)err;
    int *n = user;
    if (access(path, R_OK) == 0)
        (*n)++;
    return COVCT_OK;
}

int main(void)
{
    char dir[] = "/tmp/covct-test-query-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    covct_store *s = NULL;
    covct_error err = {0};
    CHECK(covct_store_open(dir, &s, &err) == COVCT_OK);
    if (!s)
        return test_report();
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) {
        size_t len;
        uint8_t *f = make(&data[i], &len);
        covct_store_result res;
        CHECK(covct_store_put(s, f, len, "TEST", &res, NULL, &err) ==
              COVCT_OK);
    }
    result r;
    /* Universal matching at each level. */
    CHECK(find(s, true, T_PID, &r, "PATIENT", 1, T_PID, "") == 2);
    CHECK(find(s, false, T_STUDY, &r, "STUDY", 1, T_STUDY, "") == 3);
    CHECK(find(s, false, T_SERIES, &r, "SERIES", 1, T_SERIES, "") == 4);
    CHECK(find(s, false, T_SOP, &r, "IMAGE", 1, T_SOP, "") == 5);
    /* Person names: wildcards, case-insensitive. */
    CHECK(find(s, false, T_STUDY, &r, "STUDY", 2, T_NAME, "doe*",
               T_STUDY, "") == 2);
    CHECK(find(s, false, T_STUDY, &r, "STUDY", 2, T_NAME, "R?E^JANE",
               T_STUDY, "") == 1);
    CHECK(find(s, false, T_STUDY, &r, "STUDY", 2, T_NAME, "*smith*",
               T_STUDY, "") == 0);
    /* Other strings: case-sensitive wildcards. */
    CHECK(find(s, false, T_SERIES, &r, "SERIES", 2, T_DESC, "CHEST*",
               T_SERIES, "") == 1);
    CHECK(find(s, false, T_SERIES, &r, "SERIES", 2, T_DESC, "*chest*",
               T_SERIES, "") == 1);
    /* Date ranges (PS3.4 C.2.2.2.5): closed, open on either side. */
    CHECK(find(s, false, T_STUDY, &r, "STUDY", 2, T_DATE,
               "20200301-20200331", T_STUDY, "") == 2);
    CHECK(find(s, false, T_STUDY, &r, "STUDY", 2, T_DATE, "20210101-",
               T_STUDY, "") == 1);
    CHECK(find(s, false, T_STUDY, &r, "STUDY", 2, T_DATE, "-20200310",
               T_STUDY, "") == 1);
    CHECK(find(s, false, T_STUDY, &r, "STUDY", 2, T_DATE, "20200315",
               T_STUDY, "") == 1);
    /* Time range at the precision given (HHMM). */
    CHECK(find(s, false, T_STUDY, &r, "STUDY", 2, T_TIME, "0800-1030",
               T_STUDY, "") == 2);
    /* UID list. */
    CHECK(find(s, false, T_STUDY, &r, "STUDY", 1, T_STUDY,
               "1.2.1\\1.2.3") == 2);
    /* Modalities in Study: any series of the study in the list. */
    CHECK(find(s, false, T_MODS, &r, "STUDY", 2, T_MODS, "SEG",
               T_STUDY, "") == 1);
    CHECK(r.n == 1 && !strcmp(r.values[0], "CT"));
    CHECK(find(s, false, T_STUDY, &r, "STUDY", 2, T_MODS, "MR\\SEG",
               T_STUDY, "") == 2);
    /* Computed counts. */
    CHECK(find(s, false, T_NSTUDYINST, &r, "STUDY", 2, T_STUDY, "1.2.1",
               T_NSTUDYINST, "") == 1);
    CHECKF(!strcmp(r.values[0], "3"), "got '%s'", r.values[0]);
    CHECK(find(s, true, T_NPATSTUDIES, &r, "PATIENT", 2, T_PID, "P1",
               T_NPATSTUDIES, "") == 1);
    CHECK(!strcmp(r.values[0], "2"));
    /* Series of one study, with a modality filter. */
    CHECK(find(s, false, T_SERIES, &r, "SERIES", 3, T_STUDY, "1.2.1",
               T_MOD, "CT", T_SERIES, "") == 1);
    CHECK(!strcmp(r.values[0], "1.2.1.1"));
    /* Refusals. */
    covct_dcm_dataset *id = covct_dcm_dataset_new();
    covct_error_clear(&err);
    CHECK(covct_store_find(s, false, id, collect, &r, &err) ==
          COVCT_ERR_ARG);
    CHECK(strstr(err.msg, "Query/Retrieve Level") != NULL);
    covct_dcm_dataset_set_string(id, COVCT_TAG(0x0008, 0x0052),
                                 COVCT_VR('C', 'S'), "PATIENT", &err);
    covct_error_clear(&err);
    CHECK(covct_store_find(s, false, id, collect, &r, &err) ==
          COVCT_ERR_ARG); /* PATIENT only in the patient root */
    /* Retrieve: the instances below the match, by the unique key. */
    covct_dcm_dataset_set_string(id, COVCT_TAG(0x0008, 0x0052),
                                 COVCT_VR('C', 'S'), "STUDY", &err);
    int n = 0;
    covct_error_clear(&err);
    CHECK(covct_store_select(s, false, id, count_instance, &n, &err) ==
          COVCT_ERR_ARG); /* no Study Instance UID */
    covct_dcm_dataset_set_string(id, T_STUDY, COVCT_VR('U', 'I'), "1.2.1",
                                 &err);
    covct_error_clear(&err);
    CHECK(covct_store_select(s, false, id, count_instance, &n, &err) ==
              COVCT_OK &&
          n == 3);
    covct_dcm_dataset_free(id);
    covct_store_close(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return test_report();
}
