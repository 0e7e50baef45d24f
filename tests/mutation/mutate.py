#!/usr/bin/env python3
"""Reads tests/mutation/catalogue.txt and applies one mutation to a copy of
the source tree (used by tests/mutation/run.sh; see docs/TESTING.md).

Catalogue format: blocks separated by a line "## ID", each with

    area:    optimiser | bn | kernels | distributions | masks | loader | ...
    file:    path relative to the repository root
    tests:   CTest regex of the tests expected to catch it (ctest -R)
    why:     one line: the realistic bug it stands for
    after:   (optional) text of an anchor line; the first matching line after
             the anchor's first occurrence is the one changed
    find:    the exact original line (compared without leading/trailing blanks);
             without an anchor it must occur exactly once in the file
    replace: its replacement (the original line's indentation is kept)

A block may hold several find/replace pairs (applied in order; each "after:"
applies to the pair that follows it). A mutation is addressed by text, never
by line number, so it survives code moves; if an original line is not found
(or, without an anchor, is found more than once), the mutation is "stale".

    mutate.py list CATALOGUE                -> "ID<TAB>AREA<TAB>FILE<TAB>TESTS" lines
    mutate.py apply CATALOGUE ID ROOT       -> edits ROOT/FILE; exit 3 if stale
"""
import sys


def parse(path):
    muts, cur = [], None
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        if line.startswith("## "):
            cur = {"id": line[3:].strip(), "edits": [], "after": None}
            muts.append(cur)
            continue
        if cur is None or not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("area", "file", "tests", "why"):
            cur[key] = value
        elif key == "after":
            cur["after"] = value
        elif key == "find":
            cur["edits"].append({"find": value, "after": cur["after"], "replace": None})
            cur["after"] = None
        elif key == "replace":
            if not cur["edits"] or cur["edits"][-1]["replace"] is not None:
                raise SystemExit(f"{path}: mutation {cur['id']}: 'replace' without its 'find'")
            cur["edits"][-1]["replace"] = raw.split(":", 1)[1].strip()
        else:
            raise SystemExit(f"{path}: mutation {cur['id']}: unknown key {key!r}")
    ids = set()
    for m in muts:
        for k in ("area", "file", "tests", "why"):
            if k not in m:
                raise SystemExit(f"{path}: mutation {m['id']} has no '{k}:'")
        if not m["edits"] or any(e["replace"] is None for e in m["edits"]):
            raise SystemExit(f"{path}: mutation {m['id']} needs find/replace pairs")
        if m["id"] in ids:
            raise SystemExit(f"{path}: mutation id {m['id']} appears twice")
        ids.add(m["id"])
    return muts


def apply(m, root):
    path = f"{root}/{m['file']}"
    try:
        lines = open(path, encoding="utf-8").read().split("\n")
    except OSError as e:
        print(f"stale: {m['file']}: {e.strerror}")
        return 3
    for e in m["edits"]:
        start = 0
        if e["after"] is not None:
            anchors = [i for i, l in enumerate(lines) if e["after"] in l]
            if not anchors:
                print(f"stale: anchor {e['after']!r} not found in {m['file']}")
                return 3
            start = anchors[0] + 1
        hits = [i for i in range(start, len(lines)) if lines[i].strip() == e["find"]]
        if e["after"] is not None:
            hits = hits[:1]  # the first match after the anchor
        if len(hits) != 1:
            print(f"stale: {'no' if not hits else len(hits)} line(s) {e['find']!r} in {m['file']}"
                  f"{' after ' + repr(e['after']) if e['after'] else ''}")
            return 3
        i = hits[0]
        indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
        lines[i] = indent + e["replace"]
    open(path, "w", encoding="utf-8").write("\n".join(lines))
    return 0


def main(argv):
    if len(argv) == 3 and argv[1] == "list":
        for m in parse(argv[2]):
            print(f"{m['id']}\t{m['area']}\t{m['file']}\t{m['tests']}")
        return 0
    if len(argv) == 5 and argv[1] == "apply":
        muts = {m["id"]: m for m in parse(argv[2])}
        if argv[3] not in muts:
            print(f"unknown mutation {argv[3]}")
            return 2
        return apply(muts[argv[3]], argv[4])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
