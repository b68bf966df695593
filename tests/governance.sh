#!/bin/bash
# Issue 6's governance through the commands a site uses, on SQLite or
# (as governance_pg, with COVCT_DB set by tests/with-postgres.sh)
# PostgreSQL:
#   - an export without an approval in force, or without a data use
#     agreement in force, is refused, a withdrawn patient is left out,
#     and all are in the audit log;
#   - an export with consent contains the patient's CT as NIfTI (shape
#     checked with nibabel against the DICOM series read by pydicom), and
#     de-identified DICOM that dcmdump shows without the patient's name
#     or ID; sha256sum checks the manifest;
#   - changing, deleting, reordering or adding audit entries directly in
#     the database (sqlite3 or psql, not covct) makes `covct audit verify`
#     fail and name the entry; the untouched log verifies;
#   - export, project, consent, audit and deid refuse a --data folder
#     that is not a data folder instead of creating one.
. "$(dirname "$0")/lib.sh"
need "$PY" dcmdump sha256sum
if [ -n "${COVCT_DB:-}" ]; then need psql; else need sqlite3; fi
p001=$(data covid-ct-md/P001) || exit $?
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
B=$COVCT_BIN
D=$tmp/site

# SQL straight into the case database, with the backend's own client.
sql() {
    if [ -n "${COVCT_DB:-}" ]; then
        psql -q -X -t -A -v ON_ERROR_STOP=1 "$COVCT_DB" -c "$1"
    else
        sqlite3 "$D/covct.db" "$1"
    fi
}

"$B" import "$p001" --data "$D" >"$tmp/import.log" 2>&1
check "import P001" [ $? -eq 0 ]
pid=$(dcmdump +P PatientID "$(ls -d "$p001"/* | head -1)" | sed 's/.*\[\(.*\)\].*/\1/')
name=$(dcmdump +P PatientName "$(ls -d "$p001"/* | head -1)" | sed 's/.*\[\(.*\)\].*/\1/')
check "P001 has a patient ID" [ -n "$pid" ]

"$B" project create lung-ai --title "Lung AI" --data "$D" >/dev/null
check "project created" [ $? -eq 0 ]
check "project key made" [ "$(stat -c %a "$D/keys/project-lung-ai.key")" = 600 ]
"$B" project add lung-ai --all-patients --data "$D" >/dev/null
check "patients added" [ "$(sql "SELECT COUNT(*) FROM project_patients")" = 1 ]

# 1. No approval: refused, nothing written, audited.
"$B" export --project lung-ai -o "$tmp/x0" --data "$D" 2>"$tmp/err"
check "export without approval exits 1" [ $? -eq 1 ]
check "says refused and why" grep -q "refused.*no ethics approval" "$tmp/err"
check "nothing written" [ ! -e "$tmp/x0" ]
check "refusal audited" [ "$(sql "SELECT COUNT(*) FROM audit_log WHERE action = 'export.refused'")" = 1 ]

# An expired approval does not count either.
"$B" project approve lung-ai --committee "EC of Test Hospital" --number EC-2020-1 \
    --granted 2020-01-01 --expires 2020-12-31 --purposes research \
    --scope images,labels,clinical --data "$D" >/dev/null
"$B" export --project lung-ai -o "$tmp/x1" --data "$D" 2>"$tmp/err"
check "expired approval: refused" grep -q "expired on 2020-12-31" "$tmp/err"
"$B" project approve lung-ai --committee "EC of Test Hospital" --number EC-2026-7 \
    --granted 2026-01-01 --expires 2099-12-31 --purposes research,algorithm-development \
    --scope images,labels,clinical --data "$D" >/dev/null
check "approval recorded" [ $? -eq 0 ]
"$B" project approve lung-ai --committee X --number Y --granted 2026-13-01 \
    --expires 2099-12-31 --purposes research --scope images --data "$D" 2>"$tmp/err"
check "bad date refused with the value" grep -q "2026-13-01" "$tmp/err"

# The approval allows the research; the receiver must also be bound by a
# data use agreement in force: none, or only an expired one, is refused.
"$B" export --project lung-ai -o "$tmp/xa" --data "$D" 2>"$tmp/err"
check "no data use agreement: refused" [ $? -eq 1 ]
check "no data use agreement: says so and how to record one" \
    grep -q "refused: the project has no data use agreement.*covct project agreement" "$tmp/err"
"$B" project agreement lung-ai --party "Uni Lab" --signed 2020-01-01 \
    --expires 2020-12-31 --terms "research only" --data "$D" >/dev/null
check "agreement recorded" [ $? -eq 0 ]
"$B" export --project lung-ai -o "$tmp/xa" --data "$D" 2>"$tmp/err"
check "expired agreement: refused with its date" \
    grep -q "data use agreement with Uni Lab expired on 2020-12-31" "$tmp/err"
check "nothing written" [ ! -e "$tmp/xa" ]
check "both refusals audited with the reason" \
    [ "$(sql "SELECT COUNT(*) FROM audit_log WHERE action = 'export.refused' AND detail LIKE '%data use agreement%'")" = 2 ]
"$B" project agreement lung-ai --party "Uni Lab" --signed 2026-01-01 \
    --terms "research only" --data "$D" >/dev/null

# 2. Consent withdrawn: the patient is left out, and that is audited.
"$B" consent "$pid" --project lung-ai --given --reference "form 17" --data "$D" >/dev/null
"$B" consent "$pid" --project lung-ai --withdrawn --reference "letter" --data "$D" >/dev/null
"$B" export --project lung-ai -o "$tmp/x2" --data "$D" >"$tmp/out" 2>&1
check "export runs" [ $? -eq 0 ]
check "withdrawn patient counted" grep -q "1 withdrew consent" "$tmp/out"
check "no image of the withdrawn patient" [ -z "$(ls "$tmp/x2/images" 2>/dev/null)" ]
check "audited with the count" [ "$(sql "SELECT COUNT(*) FROM audit_log WHERE action = 'export' AND detail LIKE '%\"withdrawn\":1%'")" = 1 ]
"$B" project show lung-ai --data "$D" >"$tmp/show"
check "project show counts consent" grep -q "consent withdrawn: 1" "$tmp/show"
check "project show marks the expired agreement" \
    grep -q "agreement with Uni Lab, signed 2020-01-01, expires 2020-12-31 (EXPIRED" "$tmp/show"

# 3. Consent given again: the patient's CT leaves, de-identified.
"$B" consent "$pid" --project lung-ai --given --reference "form 18" --data "$D" >/dev/null
"$B" export --project lung-ai -o "$tmp/x3" --dicom --data "$D" >"$tmp/out" 2>&1
check "export with consent" [ $? -eq 0 ]
vol=$(ls "$tmp"/x3/images/*/ct-1.nii.gz 2>/dev/null | head -1)
check "a volume written" [ -n "$vol" ]
check "manifest verifies (sha256sum)" sh -c "cd '$tmp/x3' && sha256sum --quiet -c manifest.sha256"
check "volume shape = the DICOM series (nibabel, pydicom)" "$PY" - "$vol" "$p001" <<'EOF'
import sys, os, nibabel, pydicom
img = nibabel.load(sys.argv[1])
files = [os.path.join(sys.argv[2], f) for f in os.listdir(sys.argv[2])]
ds = pydicom.dcmread(files[0], stop_before_pixels=True)
want = (int(ds.Columns), int(ds.Rows), len(files))
sys.exit(0 if tuple(img.shape) == want else 1)
EOF
first=$(ls "$tmp"/x3/dicom/*/ct-1/*.dcm 2>/dev/null | head -1)
check "de-identified DICOM written" [ -n "$first" ]
dcmdump "$first" >"$tmp/dump" 2>&1
check "no patient ID in the DICOM" sh -c "! grep -qF '$pid' '$tmp/dump'"
check "no patient name in the DICOM" sh -c "[ -z '$name' ] || ! grep -qF '$name' '$tmp/dump'"
check "identity marked removed" grep -q "\[YES\].*PatientIdentityRemoved" "$tmp/dump"
check "datasheet: the expired agreement marked" \
    grep -q "Uni Lab, signed 2020-01-01, expires 2020-12-31 (EXPIRED on " "$tmp/x3/datasheet.md"
check "datasheet: the agreement in force" \
    grep -q "Uni Lab, signed 2026-01-01, expires never (in force on " "$tmp/x3/datasheet.md"
check "no site patient ID in the text files" sh -c "! grep -rqF '$pid' '$tmp/x3' --include=*.csv --include=*.md"
check "exports recorded" [ "$(sql "SELECT COUNT(*) FROM exports")" = 2 ]

# Users and roles: a researcher may not run an export; the refusal is
# audited in her name.
echo "correct horse battery" | "$B" user add rita --role researcher --data "$D" >/dev/null
check "user added" [ $? -eq 0 ]
check "password stored as an Argon2id hash" [ "$(sql "SELECT substr(password_hash, 1, 10) FROM users WHERE name = 'rita'")" = '$argon2id$' ]
"$B" user add bob --role surgeon --no-password --data "$D" 2>"$tmp/err"
check "unknown role refused, roles listed" grep -q "unknown role 'surgeon'.*ethics-officer" "$tmp/err"
echo short | "$B" user add eve --role annotator --password-stdin --data "$D" 2>"$tmp/err"
check "short password refused" grep -q "at least 8" "$tmp/err"
"$B" export --project lung-ai -o "$tmp/x4" --as rita --data "$D" 2>"$tmp/err"
check "researcher may not run an export" grep -q "user:rita (role researcher) may not export.run" "$tmp/err"
check "refusal audited in her name" [ "$(sql "SELECT COUNT(*) FROM audit_log WHERE action = 'denied' AND actor = 'user:rita'")" = 1 ]
"$B" user list --data "$D" >"$tmp/users"
check "user list" grep -q "^rita	researcher$" "$tmp/users"

# covct deid with --data is recorded too.
"$B" deid --new-key "$tmp/k" >/dev/null
"$B" deid "$(ls -d "$p001"/* | head -1)" "$tmp/one.dcm" --key "$tmp/k" --data "$D" -q
check "deid with --data" [ $? -eq 0 ]
check "deid audited" [ "$(sql "SELECT COUNT(*) FROM audit_log WHERE action = 'deid' AND detail LIKE '%\"written\":1%'")" = 1 ]

# A folder that is not a data folder (a mistyped --data) is refused, not
# turned into an empty one: no covct.db appears in it.
mkdir "$tmp/notdata"
for c in "export --project lung-ai -o $tmp/nd-out" "project list" \
         "consent $pid --project lung-ai --given" "audit verify" \
         "deid $(ls -d "$p001"/* | head -1) $tmp/nd.dcm --key $tmp/k"; do
    env -u COVCT_DB "$B" $c --data "$tmp/notdata" >/dev/null 2>"$tmp/err"
    check "${c%% *} on a folder without covct.db: exit 1" [ $? -eq 1 ]
    check "${c%% *}: says which folder is wrong" \
        grep -q "$tmp/notdata is not a covct data folder" "$tmp/err"
    check "${c%% *}: no covct.db made" [ ! -e "$tmp/notdata/covct.db" ]
    "$B" $c --data "$tmp/nowhere" >/dev/null 2>"$tmp/err"
    check "${c%% *} on a missing folder: refused" \
        grep -q "data folder $tmp/nowhere does not exist" "$tmp/err"
    check "${c%% *}: the folder not made" [ ! -e "$tmp/nowhere" ]
done
check "no export written" [ ! -e "$tmp/nd-out" ] && [ ! -e "$tmp/nd.dcm" ]

# 4. The audit log: intact, then tampered with directly in the database.
"$B" audit verify --data "$D" >"$tmp/v"
check "untouched log verifies" grep -q "audit log intact" "$tmp/v"
n=$(sql "SELECT MAX(seq) FROM audit_log")
check "log has entries" [ "$n" -gt 10 ]
sql "CREATE TABLE audit_save AS SELECT * FROM audit_log" >/dev/null
restore() {
    sql "DELETE FROM audit_log" >/dev/null
    sql "INSERT INTO audit_log SELECT * FROM audit_save" >/dev/null
}
tampered() { # tampered DESCRIPTION SEQ: verify fails and names entry SEQ
    "$B" audit verify --data "$D" >"$tmp/v" 2>&1
    local rc=$?
    check "$1: verify exits 1" [ $rc -eq 1 ]
    check "$1: names entry $2" grep -q "first bad entry $2:" "$tmp/v"
    restore
}
sql "UPDATE audit_log SET actor = 'os:nobody' WHERE seq = 4" >/dev/null
tampered "changed actor" 4
sql "UPDATE audit_log SET detail = '{}' WHERE seq = 7" >/dev/null
tampered "changed detail" 7
sql "DELETE FROM audit_log WHERE seq = 5" >/dev/null
tampered "deleted" 5
sql "DELETE FROM audit_log WHERE seq = $n" >/dev/null
tampered "deleted the last" "$n"
sql "UPDATE audit_log SET seq = -1 WHERE seq = 3" >/dev/null
sql "UPDATE audit_log SET seq = 3 WHERE seq = 2" >/dev/null
sql "UPDATE audit_log SET seq = 2 WHERE seq = -1" >/dev/null
tampered "reordered" 2
sql "INSERT INTO audit_log SELECT 0, at, actor, role, action, object, detail, key_id, prev_hash, hash, sig FROM audit_log WHERE seq = 3" >/dev/null
"$B" audit verify --data "$D" >"$tmp/v0" 2>&1
check "a row numbered 0: named" grep -q "a row numbered 0 (" "$tmp/v0"
tampered "a row outside the chain" $((n + 1))
"$B" audit verify --data "$D" >"$tmp/v"
check "restored log verifies again" grep -q "audit log intact" "$tmp/v"
"$B" audit show --data "$D" --last 3 >"$tmp/show"
check "audit show lists the verification" grep -q "audit.verify" "$tmp/show"
sql "DROP TABLE audit_save" >/dev/null

# covct agreement reads the readers' versions (values: test_export).
for r in 1 2; do
    sql "INSERT INTO clinical_labels (case_id, diagnosis, severity, status, author, created_at) VALUES (1, 'covid-19-confirmed', $((10 + r)), 'reader-$r', 'user:r$r', '2026-11-27T00:00:00.000Z')" >/dev/null
done
"$B" agreement --data "$D" >"$tmp/agree"
check "agreement over the case read twice" grep -q "clinical labels by both readers: 1 cases" "$tmp/agree"
check "severity difference 1" grep -q "mean absolute difference: *1.0000" "$tmp/agree"
finish
