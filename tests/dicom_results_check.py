#!/usr/bin/python3
"""Check covct's DICOM results (covct analyze --dicom) with independent
readers: pydicom for the data sets and the SEG's pixel data (its own 1-bit
unpacking, cross-checked with numpy's), nibabel for the masks of the same
run.

usage: dicom_results_check.py SOURCE_DICOM_DIR REPORT_DIR [DICOM_DIR]

REPORT_DIR holds report.json, lungs.nii.gz, lobes.nii.gz, lesions.nii.gz;
DICOM_DIR (default REPORT_DIR/dicom) holds seg.dcm, sr.dcm, key-NN.dcm.
Prints one line per failed check and "N passed, N failed"; exit 1 on any
failure.
"""
import glob
import json
import os
import sys

import nibabel as nib
import numpy as np
import pydicom

PASS = 0
FAIL = 0


def check(what, cond, detail=""):
    global PASS, FAIL
    if cond:
        PASS += 1
    else:
        FAIL += 1
        print("FAIL: %s%s" % (what, (": " + str(detail)) if detail else ""))
    return cond


SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"

# Segment label -> (mask file, label value, SNOMED CT type code).
SEGMENTS = {
    "Right lung": ("lungs", 1, "3341006"),
    "Left lung": ("lungs", 2, "44029006"),
    "Left upper lobe": ("lobes", 1, "44714003"),
    "Left lower lobe": ("lobes", 2, "41224006"),
    "Right upper lobe": ("lobes", 3, "42400003"),
    "Right middle lobe": ("lobes", 4, "72481006"),
    "Right lower lobe": ("lobes", 5, "266005"),
    "Ground glass opacity": ("lesions", 1, "1217294009"),
    "Consolidation": ("lesions", 2, "95436008"),
}


def main():
    src_dir, rep_dir = sys.argv[1], sys.argv[2]
    dcm_dir = sys.argv[3] if len(sys.argv) > 3 else os.path.join(rep_dir,
                                                                   "dicom")
    # ---- the source series ------------------------------------------------
    src = {}
    for p in sorted(glob.glob(os.path.join(src_dir, "**", "*"),
                              recursive=True)):
        if not os.path.isfile(p):
            continue
        try:
            d = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:
            continue
        if "ImagePositionPatient" not in d:
            continue
        src[str(d.SOPInstanceUID)] = d
    check("source series read", len(src) > 0, src_dir)
    first = next(iter(src.values()))
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    # Slice order of the volume: by position along the normal.
    order = sorted(src, key=lambda u: float(
        np.dot(normal, [float(v) for v in src[u].ImagePositionPatient])))
    k_of = {u: k for k, u in enumerate(order)}

    masks = {}
    for name in ("lungs", "lobes", "lesions"):
        masks[name] = np.asanyarray(
            nib.load(os.path.join(rep_dir, name + ".nii.gz")).dataobj)
    rep = json.load(open(os.path.join(rep_dir, "report.json")))

    def same_patient_study(d, what):
        for kw in ("PatientID", "PatientName", "PatientBirthDate",
                   "PatientSex", "StudyInstanceUID", "StudyDate",
                   "StudyTime", "AccessionNumber", "StudyID"):
            check("%s %s equals the source's" % (what, kw),
                  str(d.get(kw, "")) == str(first.get(kw, "")),
                  "%r vs %r" % (d.get(kw, ""), first.get(kw, "")))
        check(what + " is a new series",
              d.SeriesInstanceUID != first.SeriesInstanceUID)
        check(what + " is a new instance", d.SOPInstanceUID not in src)
        check(what + " UIDs are 2.25 UIDs",
              str(d.SOPInstanceUID).startswith("2.25.")
              and str(d.SeriesInstanceUID).startswith("2.25."))

    # ---- SEG -----------------------------------------------------------------
    seg = pydicom.dcmread(os.path.join(dcm_dir, "seg.dcm"))
    check("SEG SOP class", seg.SOPClassUID == SEG_CLASS, seg.SOPClassUID)
    check("SEG modality", seg.Modality == "SEG")
    check("SEG binary, 1 bit",
          seg.SegmentationType == "BINARY" and seg.BitsAllocated == 1)
    same_patient_study(seg, "SEG")
    check("SEG Frame of Reference UID is the source's",
          seg.FrameOfReferenceUID == first.FrameOfReferenceUID,
          "%s vs %s" % (seg.FrameOfReferenceUID, first.FrameOfReferenceUID))
    numbers = {}
    for i, s in enumerate(seg.SegmentSequence):
        check("segment numbers 1, 2, ...", s.SegmentNumber == i + 1)
        check("segment '%s' known" % s.SegmentLabel,
              s.SegmentLabel in SEGMENTS)
        if s.SegmentLabel in SEGMENTS:
            check("segment '%s' property type" % s.SegmentLabel,
                  s.SegmentedPropertyTypeCodeSequence[0].CodeValue ==
                  SEGMENTS[s.SegmentLabel][2])
        check("segment '%s' automatic, named" % s.SegmentLabel,
              s.SegmentAlgorithmType == "AUTOMATIC"
              and str(s.SegmentAlgorithmName).startswith("covct"))
        numbers[s.SegmentNumber] = s.SegmentLabel
    nframes = int(seg.NumberOfFrames)
    rows, cols = int(seg.Rows), int(seg.Columns)
    # pydicom's 1-bit unpacking is the peer; numpy's the cross-check.
    arr = seg.pixel_array.reshape(nframes, rows, cols)
    raw = np.frombuffer(seg.PixelData, dtype=np.uint8)
    mine = np.unpackbits(raw, bitorder="little")[:nframes * rows * cols]
    check("pydicom and numpy unpack the same bits",
          np.array_equal(arr.reshape(-1).astype(np.uint8), mine))
    counted = {lab: 0 for lab in SEGMENTS}
    ref_ok = pos_ok = frames_ok = True
    for f, pf in enumerate(seg.PerFrameFunctionalGroupsSequence):
        segno = pf.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        label = numbers.get(segno)
        srcimg = pf.DerivationImageSequence[0].SourceImageSequence[0]
        uid = srcimg.ReferencedSOPInstanceUID
        if uid not in src or srcimg.ReferencedSOPClassUID != \
                src[uid].SOPClassUID:
            ref_ok = False
            continue
        ipp = [float(v) for v in pf.PlanePositionSequence[0]
               .ImagePositionPatient]
        sipp = [float(v) for v in src[uid].ImagePositionPatient]
        if max(abs(a - b) for a, b in zip(ipp, sipp)) > 1e-3:
            pos_ok = False
        if label is None:
            frames_ok = False
            continue
        mfile, val, _ = SEGMENTS[label]
        k = k_of[uid]
        # NIfTI data are (i, j, k); a DICOM frame is rows (j) x columns (i).
        want = (masks[mfile][:, :, k] == val).T
        if not np.array_equal(arr[f].astype(bool), want):
            frames_ok = False
        counted[label] += int(arr[f].sum())
    check("every frame references a source SOP Instance (and its class)",
          ref_ok)
    check("every frame's position is its source image's", pos_ok)
    check("every frame equals its slice of the mask", frames_ok)
    for label, (mfile, val, _) in SEGMENTS.items():
        want = int((masks[mfile] == val).sum())
        check("voxels of '%s' (SEG %d, %s.nii.gz %d)" %
              (label, counted[label], mfile, want), counted[label] == want)
    check("Referenced Series Sequence names the source series",
          seg.ReferencedSeriesSequence[0].SeriesInstanceUID ==
          first.SeriesInstanceUID)

    # ---- SR ------------------------------------------------------------------
    sr = pydicom.dcmread(os.path.join(dcm_dir, "sr.dcm"))
    check("SR SOP class", sr.SOPClassUID == SR_CLASS)
    same_patient_study(sr, "SR")
    check("SR unverified", sr.VerificationFlag == "UNVERIFIED")
    check("SR template 1500",
          sr.ContentTemplateSequence[0].TemplateIdentifier == "1500")

    nums, codes, refs, texts = {}, {}, [], []

    def walk(items, site=None):
        for it in items:
            name = it.ConceptNameCodeSequence[0].CodeValue \
                if "ConceptNameCodeSequence" in it else None
            vt = it.ValueType
            here = site
            if "ContentSequence" in it:
                for c in it.ContentSequence:
                    if c.ValueType == "CODE" and \
                            c.ConceptNameCodeSequence[0].CodeValue == \
                            "363698007":
                        here = c.ConceptCodeSequence[0].CodeValue
            if vt == "NUM":
                mv = it.MeasuredValueSequence[0]
                nums[(site, name)] = float(mv.NumericValue)
            elif vt == "CODE":
                codes[(site, name)] = it.ConceptCodeSequence[0].CodeValue
            elif vt == "TEXT":
                texts.append(str(it.TextValue))
            elif vt == "IMAGE" and name == "121191":
                refs.append(it.ReferencedSOPSequence[0])
            if "ContentSequence" in it:
                walk(it.ContentSequence, here)

    walk(sr.ContentSequence)
    check("SR total CT severity score equals report.json's",
          nums.get(("39607008", "CTSS")) == rep["ct_severity_score"],
          "%s vs %s" % (nums.get(("39607008", "CTSS")),
                        rep["ct_severity_score"]))
    lobe_sites = {"LUL": "44714003", "LLL": "41224006", "RUL": "42400003",
                  "RML": "72481006", "RLL": "266005"}
    for lobe, site in lobe_sites.items():
        if rep["lobes"][lobe]["volume_ml"] > 0:
            check("SR %s score equals report.json's" % lobe,
                  nums.get((site, "CTSSLOBE")) ==
                  rep["lobes"][lobe]["score"])
            check("SR %s volume equals report.json's" % lobe,
                  abs(nums.get((site, "118565006"), -1) -
                      rep["lobes"][lobe]["volume_ml"]) < 0.06)
    check("SR lung volume equals report.json's",
          abs(nums.get(("39607008", "118565006"), -1) -
              rep["lungs"]["total_ml"]) < 0.06)
    check("SR category equals report.json's",
          codes.get(("39607008", "RSNACAT"), "").lower()[:5] ==
          rep["category"][:5], codes.get(("39607008", "RSNACAT")))
    check("SR says it is an AI result to be confirmed",
          any("to be confirmed by a radiologist" in t for t in texts))
    check("SR references the SEG's segments",
          len(refs) > 0 and all(
              r.ReferencedSOPInstanceUID == seg.SOPInstanceUID and
              r.ReferencedSegmentNumber in numbers for r in refs))
    ev = sr.CurrentRequestedProcedureEvidenceSequence[0]
    check("SR evidence lists the source images",
          {str(r.ReferencedSOPInstanceUID) for r in
           ev.ReferencedSeriesSequence[0].ReferencedSOPSequence} ==
          set(src))

    # ---- key images ------------------------------------------------------------
    keys = sorted(glob.glob(os.path.join(dcm_dir, "key-*.dcm")))
    check("key images written", len(keys) >= 2, len(keys))
    series = set()
    for p in keys:
        d = pydicom.dcmread(p)
        name = os.path.basename(p)
        check(name + " SOP class", d.SOPClassUID == SC_CLASS)
        same_patient_study(d, name)
        series.add(d.SeriesInstanceUID)
        check(name + " RGB 8-bit",
              d.SamplesPerPixel == 3 and d.PhotometricInterpretation ==
              "RGB" and d.BitsAllocated == 8)
        check(name + " Burned In Annotation YES",
              d.BurnedInAnnotation == "YES")
        px = d.pixel_array
        check(name + " pixels", px.shape == (d.Rows, d.Columns, 3))
        # The banner: dark red strip with white letters across the top.
        top = px[:8].reshape(-1, 3)
        check(name + " banner strip on top",
              np.all(top == [150, 0, 0], axis=1).mean() > 0.9)
        band = px[:40].reshape(-1, 3)
        check(name + " banner has white text",
              np.all(band == [255, 255, 255], axis=1).sum() > 200)
        if "SourceImageSequence" in d:
            check(name + " references a source image",
                  d.SourceImageSequence[0].ReferencedSOPInstanceUID in src)
    check("key images form one series", len(series) == 1)
    print("%d passed, %d failed" % (PASS, FAIL))
    return 1 if FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
