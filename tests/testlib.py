"""Shared helpers of the Python tests: where the source and build trees are,
and a check() that prints one line per check and remembers failures."""
import os
import sys

SRC = os.environ.get("ST_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.environ.get("ST_BUILD_DIR", os.path.join(SRC, "build"))
sys.path.insert(0, os.path.join(SRC, "tools"))

failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
    if not ok:
        failures.append(name)


def finish():
    """Exits non-zero if any check failed, printing the summary."""
    if failures:
        print(f"FAILED: {len(failures)} check(s)")
        sys.exit(1)
    print("PASS")
