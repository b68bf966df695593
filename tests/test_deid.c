/* The de-identification of the govern module: the HMAC wrapper against
 * RFC 4231, the Table E.1-1 actions against the standard, the mappings,
 * key files, burned-in refusals, and a whole data set (with allocation
 * failures). */
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "covct/govern.h"
#include "test.h"

#define T COVCT_TAG

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void test_hmac(void)
{
    /* RFC 4231 test cases 1, 2 and 6 (a key longer than the block). */
    uint8_t k1[20], k6[131], mac[32];
    char h[65];
    memset(k1, 0x0b, sizeof k1);
    memset(k6, 0xaa, sizeof k6);
    CHECK(covct_deid_hmac_sha256(k1, sizeof k1, "Hi There", 8, mac, NULL) ==
          COVCT_OK);
    hex(mac, 32, h);
    CHECK(!strcmp(h, "b0344c61d8db38535ca8afceaf0bf12b"
                     "881dc200c9833da726e9376c2e32cff7"));
    const char *m2 = "what do ya want for nothing?";
    CHECK(covct_deid_hmac_sha256((const uint8_t *)"Jefe", 4, m2, strlen(m2),
                                 mac, NULL) == COVCT_OK);
    hex(mac, 32, h);
    CHECK(!strcmp(h, "5bdcc146bf60754e6a042426089575c7"
                     "5a003f089d2739839dec58b964ec3843"));
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    CHECK(covct_deid_hmac_sha256(k6, sizeof k6, m6, strlen(m6), mac, NULL) ==
          COVCT_OK);
    hex(mac, 32, h);
    CHECK(!strcmp(h, "60e431591ee0b67f0d8a26aacbf5b77f"
                     "8e0bc6213728c5140546040f0ee37f54"));
}

static void test_table(void)
{
    /* Rows of PS3.15 Table E.1-1 (Basic Prof. column). */
    static const struct { uint32_t tag; const char *basic; } rows[] = {
        {T(0x0010, 0x0010), "Z"},      {T(0x0010, 0x0020), "Z/D"},
        {T(0x0010, 0x0030), "Z"},      {T(0x0008, 0x0050), "Z"},
        {T(0x0008, 0x0080), "X/Z/D"},  {T(0x0008, 0x0090), "Z"},
        {T(0x0020, 0x000D), "U"},      {T(0x0020, 0x000E), "U"},
        {T(0x0008, 0x0018), "U"},      {T(0x0020, 0x0052), "U"},
        {T(0x0008, 0x1155), "U"},      {T(0x0008, 0x1140), "X/Z/U*"},
        {T(0x0008, 0x2112), "X/Z/U*"}, {T(0x0008, 0x0020), "Z"},
        {T(0x0008, 0x0021), "X/D"},    {T(0x0008, 0x0022), "X/Z"},
        {T(0x0008, 0x0023), "Z/D"},    {T(0x0008, 0x002A), "X/Z/D"},
        {T(0x0008, 0x0012), "X/D"},    {T(0x0008, 0x0013), "X/Z/D"},
        {T(0x0008, 0x1010), "X/Z/D"},  {T(0x0018, 0x1000), "X/Z/D"},
        {T(0x0008, 0x1030), "X"},      {T(0x0008, 0x103E), "X"},
        {T(0x0010, 0x1010), "X"},      {T(0x0010, 0x1000), "X"},
        {T(0x0040, 0xA730), "D"},      {T(0x0018, 0x1030), "X/D"},
        {T(0x5010, 0x3000), "X"},      {T(0x6002, 0x3000), "X"},
        {T(0x6000, 0x4000), "X"},      {T(0x0009, 0x0010), "X"},
        {T(0x0029, 0x1010), "X"},      {T(0xFFFC, 0xFFFC), "X"},
        {T(0x0020, 0x0010), "Z"},      {T(0x0062, 0x0021), "U"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        const char *b = covct_deid_table_basic(rows[i].tag);
        CHECKF(b && !strcmp(b, rows[i].basic), "(%04X,%04X): %s, want %s",
               COVCT_TAG_GROUP(rows[i].tag), COVCT_TAG_ELEM(rows[i].tag),
               b ? b : "(none)", rows[i].basic);
    }
    /* Not in the table: kept. */
    CHECK(covct_deid_table_basic(T(0x0008, 0x0016)) == NULL);
    CHECK(covct_deid_table_basic(T(0x7FE0, 0x0010)) == NULL);
    CHECK(covct_deid_table_basic(T(0x6000, 0x0010)) == NULL);
    CHECK(covct_deid_table_basic(T(0x6020, 0x3000)) == NULL);

    covct_deid_opts basic, dflt;
    memset(&basic, 0, sizeof basic);
    covct_deid_opts_default(&dflt);
    const uint16_t sq = COVCT_VR('S', 'Q'), lo = COVCT_VR('L', 'O');
#define ACT(tag, vr, o) covct_deid_action_for(tag, vr, &o)
    /* Compound actions resolve to the choice that conforms for any type. */
    CHECK(ACT(T(0x0008, 0x0080), lo, basic) == COVCT_DEID_DUMMY);
    CHECK(ACT(T(0x0008, 0x0022), COVCT_VR('D', 'A'), basic) ==
          COVCT_DEID_ZERO);
    CHECK(ACT(T(0x0008, 0x1140), sq, basic) == COVCT_DEID_UID_SEQ);
    CHECK(ACT(T(0x0008, 0x1111), sq, basic) == COVCT_DEID_ZERO);
    CHECK(ACT(T(0x0040, 0xA730), sq, basic) == COVCT_DEID_ZERO);
    CHECK(ACT(T(0x0010, 0x1010), COVCT_VR('A', 'S'), basic) ==
          COVCT_DEID_REMOVE);
    CHECK(ACT(T(0x0009, 0x1001), lo, dflt) == COVCT_DEID_REMOVE);
    CHECK(ACT(T(0x0008, 0x0016), COVCT_VR('U', 'I'), dflt) ==
          COVCT_DEID_KEEP);
    /* Options. */
    CHECK(ACT(T(0x0010, 0x1010), COVCT_VR('A', 'S'), dflt) ==
          COVCT_DEID_KEEP);
    CHECK(ACT(T(0x0010, 0x0040), COVCT_VR('C', 'S'), dflt) ==
          COVCT_DEID_KEEP);
    CHECK(ACT(T(0x0008, 0x0020), COVCT_VR('D', 'A'), dflt) ==
          COVCT_DEID_CLEAN);
    CHECK(ACT(T(0x0008, 0x0020), COVCT_VR('D', 'A'), basic) ==
          COVCT_DEID_ZERO);
    CHECK(ACT(T(0x0008, 0x103E), lo, dflt) == COVCT_DEID_CLEAN);
    CHECK(ACT(T(0x0008, 0x103E), lo, basic) == COVCT_DEID_REMOVE);
    CHECK(ACT(T(0x0008, 0x1010), COVCT_VR('S', 'H'), dflt) ==
          COVCT_DEID_DUMMY);
    covct_deid_opts dev = dflt;
    dev.keep_device_id = true;
    CHECK(ACT(T(0x0008, 0x1010), COVCT_VR('S', 'H'), dev) == COVCT_DEID_KEEP);
    /* Dates stay shifted even where Rtn. Dev. Id. would keep them. */
    CHECK(ACT(T(0x0018, 0x1200), COVCT_VR('D', 'A'), dev) ==
          COVCT_DEID_CLEAN);
    covct_deid_opts inst = basic;
    inst.keep_institution_id = true;
    CHECK(ACT(T(0x0008, 0x0080), lo, inst) == COVCT_DEID_KEEP);
#undef ACT
}

static covct_deid_key *key_of(uint8_t fill)
{
    uint8_t s[32];
    memset(s, fill, sizeof s);
    covct_deid_key *k = NULL;
    CHECK(covct_deid_key_from_bytes(s, sizeof s, &k, NULL) == COVCT_OK);
    return k;
}

static void test_mapping(void)
{
    covct_deid_key *k1 = key_of(1), *k2 = key_of(2);
    char a[65], b[65], c[65], d[65];
    const char *uid = "1.3.12.2.1107.5.1.4.93005.30000020030507283104800000079";
    CHECK(covct_deid_map_uid(k1, "", uid, a, NULL) == COVCT_OK);
    CHECK(covct_deid_map_uid(k1, "", uid, b, NULL) == COVCT_OK);
    CHECK(covct_deid_map_uid(k2, "", uid, c, NULL) == COVCT_OK);
    CHECK(covct_deid_map_uid(k1, "other", uid, d, NULL) == COVCT_OK);
    CHECK(!strcmp(a, b));
    CHECK(strcmp(a, c) && strcmp(a, d));
    CHECK(!strncmp(a, "2.25.", 5) && strlen(a) <= 44 && a[5] != '0');
    /* The construction: 2.25. + the first 128 bits of
     * HMAC(key, "uid" NUL project NUL uid). */
    uint8_t secret[32], msg[128], mac[32];
    memset(secret, 1, sizeof secret);
    size_t n = 0;
    memcpy(msg, "uid\0\0", 5);
    n = 5;
    memcpy(msg + n, uid, strlen(uid));
    n += strlen(uid);
    CHECK(covct_deid_hmac_sha256(secret, 32, msg, n, mac, NULL) == COVCT_OK);
    covct_dcm_uid_from_uuid(mac, b);
    CHECK(!strcmp(a, b));
    /* Well-known UIDs (a standard frame of reference) stay. */
    CHECK(covct_deid_map_uid(k1, "", "1.2.840.10008.1.4.1.1", a, NULL) ==
          COVCT_OK);
    CHECK(!strcmp(a, "1.2.840.10008.1.4.1.1"));

    char p1[14], p2[14], p3[14];
    CHECK(covct_deid_pseudonym(k1, "", "98C14734-ASSH", p1, NULL) == 0);
    CHECK(covct_deid_pseudonym(k1, "", "98C14734-ASSH", p2, NULL) == 0);
    CHECK(covct_deid_pseudonym(k2, "", "98C14734-ASSH", p3, NULL) == 0);
    CHECK(!strcmp(p1, p2) && strcmp(p1, p3));
    CHECK(strlen(p1) == 13 && p1[0] == 'P' &&
          strspn(p1 + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") == 12);
    int lo = 0, hi = -400;
    for (int i = 0; i < 200; i++) {
        char id[16];
        int days;
        snprintf(id, sizeof id, "ID%d", i);
        CHECK(covct_deid_date_shift(k1, "", id, &days, NULL) == COVCT_OK);
        lo = days < lo ? days : lo;
        hi = days > hi ? days : hi;
    }
    CHECK(lo >= -365 && hi <= -1 && lo < -300 && hi > -60);
    covct_deid_key_free(k1);
    covct_deid_key_free(k2);
}

static void write_file(const char *path, const void *p, size_t n, int mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    CHECK(fd >= 0 && write(fd, p, n) == (ssize_t)n);
    close(fd);
    chmod(path, (mode_t)mode);
}

static void test_keys(void)
{
    char dir[] = "/tmp/covct-deid-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char p[256], q[256];
    covct_deid_key *k = NULL, *kr = NULL;
    covct_error err = {0};
    const char *hexkey =
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    snprintf(p, sizeof p, "%s/hex", dir);
    write_file(p, hexkey, strlen(hexkey), 0600);
    CHECK(covct_deid_key_load(p, &k, &err) == COVCT_OK);
    /* The same secret as raw bytes gives the same pseudonyms. */
    uint8_t raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)i;
    snprintf(q, sizeof q, "%s/raw", dir);
    write_file(q, raw, sizeof raw, 0600);
    CHECK(covct_deid_key_load(q, &kr, &err) == COVCT_OK);
    char a[14] = "", b[14] = "";
    if (k && kr) {
        covct_deid_pseudonym(k, "", "X", a, NULL);
        covct_deid_pseudonym(kr, "", "X", b, NULL);
    }
    CHECK(a[0] && !strcmp(a, b));
    covct_deid_key_free(k);
    covct_deid_key_free(kr);
    /* Too short, readable by others, missing. */
    write_file(p, hexkey, 62, 0600);
    covct_error_clear(&err);
    CHECK(covct_deid_key_load(p, &k, &err) == COVCT_ERR_ARG && !k);
    CHECK(strstr(err.msg, "too short") && strstr(err.msg, p));
    write_file(p, raw, 31, 0600);
    covct_error_clear(&err);
    CHECK(covct_deid_key_load(p, &k, &err) == COVCT_ERR_ARG);
    write_file(p, hexkey, strlen(hexkey), 0644);
    covct_error_clear(&err);
    CHECK(covct_deid_key_load(p, &k, &err) == COVCT_ERR_ARG);
    CHECK(strstr(err.msg, "chmod 600") != NULL);
    unlink(p);
    covct_error_clear(&err);
    CHECK(covct_deid_key_load(p, &k, &err) == COVCT_ERR_IO);
    /* --new-key: mode 0600, 64 hex digits, loadable, never overwritten. */
    CHECK(covct_deid_key_generate(p, &err) == COVCT_OK);
    struct stat st;
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600 &&
          st.st_size == 65);
    CHECK(covct_deid_key_load(p, &k, &err) == COVCT_OK);
    covct_deid_key_free(k);
    covct_error_clear(&err);
    CHECK(covct_deid_key_generate(p, &err) == COVCT_ERR_ARG);
    unlink(p);
    unlink(q);
    rmdir(dir);
}

static long day_number(const char *ymd)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = (ymd[0] - '0') * 1000 + (ymd[1] - '0') * 100 +
                 (ymd[2] - '0') * 10 + (ymd[3] - '0') - 1900;
    tm.tm_mon = (ymd[4] - '0') * 10 + (ymd[5] - '0') - 1;
    tm.tm_mday = (ymd[6] - '0') * 10 + (ymd[7] - '0');
    tm.tm_hour = 12;
    return (long)(timegm(&tm) / 86400);
}

static covct_dcm_dataset *sample(void)
{
    covct_dcm_dataset *ds = covct_dcm_dataset_new(), *it;
    const uint16_t UI = COVCT_VR('U', 'I');
    covct_dcm_dataset_set_string(ds, T(0x0008, 0x0016), UI,
                                 "1.2.840.10008.5.1.4.1.1.2", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0008, 0x0018), UI, "1.2.3.4.5", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0008, 0x0020), COVCT_VR('D', 'A'),
                                 "20200301", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0008, 0x002A), COVCT_VR('D', 'T'),
                                 "20200301101010.5+0100", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0008, 0x0030), COVCT_VR('T', 'M'),
                                 "101010", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0008, 0x0080), COVCT_VR('L', 'O'),
                                 "General Hospital", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0008, 0x1030), COVCT_VR('L', 'O'),
                                 "CHEST 1.25mm", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0008, 0x103E), COVCT_VR('L', 'O'),
                                 "Chest for John Smith", NULL);
    covct_dcm_dataset_add_item(ds, T(0x0008, 0x1140), &it, NULL);
    covct_dcm_dataset_set_string(it, T(0x0008, 0x1150), UI,
                                 "1.2.840.10008.5.1.4.1.1.2", NULL);
    covct_dcm_dataset_set_string(it, T(0x0008, 0x1155), UI, "1.2.3.4.6", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0009, 0x0010), COVCT_VR('L', 'O'),
                                 "ACME", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0009, 0x1001), COVCT_VR('L', 'O'),
                                 "Smith^John", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0010, 0x0010), COVCT_VR('P', 'N'),
                                 "Smith^John", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0010, 0x0020), COVCT_VR('L', 'O'),
                                 "MRN123", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0010, 0x0030), COVCT_VR('D', 'A'),
                                 "19600101", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0010, 0x1010), COVCT_VR('A', 'S'),
                                 "060Y", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0018, 0x9074), COVCT_VR('D', 'T'),
                                 "20200301", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0020, 0x000D), UI, "1.2.3.1", NULL);
    covct_dcm_dataset_set_string(ds, T(0x0020, 0x0052), UI, "1.2.3.9", NULL);
    /* An instance UID the table does not list (Source Series UID is not
     * in it): mapped all the same. */
    covct_dcm_dataset_set_string(ds, T(0x0400, 0x0500), UI, "1.2.3.7", NULL);
    covct_dcm_dataset_set_string(ds, T(0x6000, 0x0010), COVCT_VR('U', 'S'),
                                 "", NULL);
    return ds;
}

static void str(const covct_dcm_dataset *ds, uint32_t tag, char *buf,
                size_t cap)
{
    buf[0] = '\0';
    covct_dcm_get_string(ds, tag, 0, buf, cap, NULL);
}

static void test_dataset(void)
{
    covct_deid_key *k = key_of(7);
    covct_deid_opts o;
    covct_deid_opts_default(&o);
    covct_dcm_dataset *ds = sample();
    covct_error err = {0};
    CHECK(covct_deid_dataset(ds, k, &o, &err) == COVCT_OK);
    char v[128], pseudo[14], m[65];
    covct_deid_pseudonym(k, "", "MRN123", pseudo, NULL);
    str(ds, T(0x0010, 0x0010), v, sizeof v);
    CHECK(!strcmp(v, pseudo));
    str(ds, T(0x0010, 0x0020), v, sizeof v);
    CHECK(!strcmp(v, pseudo));
    str(ds, T(0x0010, 0x0030), v, sizeof v);
    CHECK(v[0] == '\0' && covct_dcm_dataset_get(ds, T(0x0010, 0x0030)));
    str(ds, T(0x0010, 0x1010), v, sizeof v);
    CHECK(!strcmp(v, "060Y"));
    str(ds, T(0x0008, 0x0080), v, sizeof v);
    CHECK(!strcmp(v, "ANONYMOUS"));
    str(ds, T(0x0008, 0x1030), v, sizeof v);
    CHECK(!strcmp(v, "CHEST 1.25mm"));
    CHECK(covct_dcm_dataset_get(ds, T(0x0008, 0x103E)) == NULL);
    CHECK(covct_dcm_dataset_get(ds, T(0x0009, 0x0010)) == NULL);
    CHECK(covct_dcm_dataset_get(ds, T(0x0009, 0x1001)) == NULL);
    CHECK(covct_dcm_dataset_get(ds, T(0x6000, 0x0010)) == NULL);
    str(ds, T(0x0008, 0x0016), v, sizeof v);
    CHECK(!strcmp(v, "1.2.840.10008.5.1.4.1.1.2"));
    static const struct { uint32_t tag; const char *orig; } uids[] = {
        {T(0x0008, 0x0018), "1.2.3.4.5"}, {T(0x0020, 0x000D), "1.2.3.1"},
        {T(0x0020, 0x0052), "1.2.3.9"},   {T(0x0400, 0x0500), "1.2.3.7"}};
    for (size_t i = 0; i < 4; i++) {
        str(ds, uids[i].tag, v, sizeof v);
        covct_deid_map_uid(k, "", uids[i].orig, m, NULL);
        CHECKF(!strcmp(v, m), "uid %zu: %s", i, v);
    }
    const covct_dcm_dataset *it =
        covct_dcm_element_item(covct_dcm_dataset_get(ds, T(0x0008, 0x1140)),
                               0);
    CHECK(it != NULL);
    if (it) {
        str(it, T(0x0008, 0x1155), v, sizeof v);
        covct_deid_map_uid(k, "", "1.2.3.4.6", m, NULL);
        CHECK(!strcmp(v, m));
    }
    /* Dates: shifted by the patient's days, times and offsets kept. */
    int days = 0;
    covct_deid_date_shift(k, "", "MRN123", &days, NULL);
    str(ds, T(0x0008, 0x0020), v, sizeof v);
    CHECKF(strlen(v) == 8 && day_number(v) - day_number("20200301") == days,
           "StudyDate %s, shift %d", v, days);
    char dt[64];
    str(ds, T(0x0008, 0x002A), dt, sizeof dt);
    CHECK(!strncmp(dt, v, 8) && !strcmp(dt + 8, "101010.5+0100"));
    str(ds, T(0x0018, 0x9074), dt, sizeof dt);
    CHECK(!strcmp(dt, v));
    str(ds, T(0x0008, 0x0030), v, sizeof v);
    CHECK(!strcmp(v, "101010"));
    str(ds, T(0x0012, 0x0062), v, sizeof v);
    CHECK(!strcmp(v, "YES"));
    str(ds, T(0x0028, 0x0303), v, sizeof v);
    CHECK(!strcmp(v, "MODIFIED"));
    CHECK(covct_dcm_element_item_count(
              covct_dcm_dataset_get(ds, T(0x0012, 0x0064))) == 4);
    covct_dcm_dataset_free(ds);

    /* The Basic Profile alone: dates emptied or removed. */
    covct_deid_opts b;
    memset(&b, 0, sizeof b);
    ds = sample();
    CHECK(covct_deid_dataset(ds, k, &b, &err) == COVCT_OK);
    str(ds, T(0x0008, 0x0020), v, sizeof v);
    CHECK(v[0] == '\0');
    str(ds, T(0x0008, 0x002A), v, sizeof v);
    CHECK(!strcmp(v, "19000101000000"));
    CHECK(covct_dcm_dataset_get(ds, T(0x0008, 0x1030)) == NULL);
    CHECK(covct_dcm_dataset_get(ds, T(0x0010, 0x1010)) == NULL);
    str(ds, T(0x0028, 0x0303), v, sizeof v);
    CHECK(!strcmp(v, "REMOVED"));
    covct_dcm_dataset_free(ds);

    /* Burned-in annotation: refused before anything changes. */
    ds = sample();
    covct_dcm_dataset_set_string(ds, T(0x0028, 0x0301), COVCT_VR('C', 'S'),
                                 "YES", NULL);
    covct_error_clear(&err);
    CHECK(covct_deid_dataset(ds, k, &o, &err) == COVCT_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "Burned In Annotation") != NULL);
    str(ds, T(0x0010, 0x0010), v, sizeof v);
    CHECK(!strcmp(v, "Smith^John"));
    covct_dcm_dataset_free(ds);
    ds = sample();
    covct_dcm_dataset_set_string(ds, T(0x0008, 0x0016), COVCT_VR('U', 'I'),
                                 "1.2.840.10008.5.1.4.1.1.7", NULL);
    covct_error_clear(&err);
    CHECK(covct_deid_dataset(ds, k, &o, &err) == COVCT_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "Secondary Capture") != NULL);
    covct_dcm_dataset_set_string(ds, T(0x0028, 0x0301), COVCT_VR('C', 'S'),
                                 "NO", NULL);
    CHECK(covct_deid_dataset(ds, k, &o, NULL) == COVCT_OK);
    covct_dcm_dataset_free(ds);
    ds = sample();
    covct_dcm_dataset_set_string(ds, T(0x0008, 0x0008), COVCT_VR('C', 'S'),
                                 "DERIVED\\SECONDARY\\SCREEN SHOT", NULL);
    CHECK(covct_deid_dataset(ds, k, &o, NULL) == COVCT_ERR_UNSUPPORTED);
    covct_dcm_dataset_free(ds);

    /* Every allocation failure is reported, never a crash or a leak. */
    int failed_ok = 0, runs = 0;
    for (uint64_t n = 1; n < 2000; n++) {
        ds = sample();
        covct_alloc_fail_at(n);
        covct_rc rc = covct_deid_dataset(ds, k, &o, NULL);
        covct_alloc_fail_at(0);
        covct_dcm_dataset_free(ds);
        runs++;
        if (rc == COVCT_OK)
            break;
        failed_ok += rc == COVCT_ERR_NOMEM;
    }
    CHECK(failed_ok == runs - 1 && runs > 10);
    covct_deid_key_free(k);
}

/* A data set holding Patient's Name twice (as broken files do): both go,
 * through covct_dcm_dataset_remove(). */
static void test_duplicates(void)
{
    static const uint8_t body[] =
        "\x08\x00\x16\x00UI\x1a\x00" "1.2.840.10008.5.1.4.1.1.2\0"
        "\x08\x00\x18\x00UI\x08\x00" "1.2.3.4\0"
        "\x10\x00\x10\x00PN\x0a\x00" "Smith^John"
        "\x10\x00\x10\x00PN\x0a\x00" "Smith^Jane";
    covct_deid_key *k = key_of(3);
    covct_deid_opts o;
    covct_deid_opts_default(&o);
    covct_buf out = {0};
    covct_error err = {0};
    CHECKF(covct_deid_buffer(body, sizeof body - 1, k, &o, &out, &err) ==
               COVCT_OK, "%s", err.msg);
    CHECK(out.len > 132 && !memmem(out.data, out.len, "Smith", 5));
    covct_dcm_file *f = NULL;
    uint8_t *copy = covct_malloc(out.len);
    memcpy(copy, out.data, out.len);
    CHECK(covct_dcm_file_parse(copy, out.len, NULL, &f, NULL) == COVCT_OK);
    const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(f);
    size_t names = 0;
    for (size_t i = 0; i < covct_dcm_dataset_count(ds); i++)
        names += covct_dcm_element_tag(covct_dcm_dataset_at(ds, i)) ==
                 T(0x0010, 0x0010);
    CHECK(names == 1);
    covct_dcm_file_free(f);
    covct_buf_free(&out);
    covct_deid_key_free(k);
}

int main(void)
{
    test_duplicates();
    test_hmac();
    test_table();
    test_mapping();
    test_keys();
    test_dataset();
    return test_report();
}
