"""Shared helpers of the Python tests: where the source and build trees are,
and a check() that prints one line per check and remembers failures."""
import os
import sys

SRC = os.environ.get("ST_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.environ.get("ST_BUILD_DIR", os.path.join(SRC, "build"))
sys.path.insert(0, os.path.join(SRC, "tools"))

failures = []
skipped = []  # parts not run because a dependency is missing (skip_part)

# CTest's SKIP_RETURN_CODE (tests/CMakeLists.txt): a test that could not run
# (a missing dependency) exits with it and CTest reports it "Skipped", never
# "Passed"; .ci/run fails if any test was skipped, since CI installs everything.
SKIP_CODE = 77


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
    if not ok:
        failures.append(name)


def rel(a, b):
    """Relative error ||a - b|| / ||b|| in float64 (any shapes, flattened)."""
    import numpy as np
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def check_against(name, ours_vs_32, ours_vs_64, torch32_vs_64, tol):
    """Parity with PyTorch when float32 rounding is amplified: the plain
    tolerance against PyTorch float32 where PyTorch float32 is itself accurate
    (within tol/10 of float64); else at least as accurate as PyTorch float32
    (our error against float64 <= max(tol, 3 x PyTorch float32's))."""
    if torch32_vs_64 <= tol / 10:
        ok = ours_vs_32 <= tol
    else:
        ok = ours_vs_64 <= max(tol, 3 * torch32_vs_64)
    check(name, ok, f"C vs torch32 {ours_vs_32:.2e}, C vs torch64 {ours_vs_64:.2e}, "
                    f"torch32 vs torch64 {torch32_vs_64:.2e} (tolerance {tol:g})")


def skip(reason):
    """The whole test cannot run (a dependency is missing): exits SKIP_CODE."""
    print(f"SKIP: {reason}")
    sys.exit(SKIP_CODE)


def skip_part(reason):
    """A part of the test cannot run (a dependency is missing): the rest runs,
    and finish() then reports the test skipped (SKIP_CODE) unless a check failed."""
    print(f"SKIP (part): {reason}")
    skipped.append(reason)


def finish():
    """Exits 1 if any check failed, SKIP_CODE if a part was skipped, else 0,
    printing the summary."""
    if failures:
        print(f"FAILED: {len(failures)} check(s)")
        sys.exit(1)
    if skipped:
        print(f"SKIPPED: {len(skipped)} part(s) not run ({'; '.join(skipped)}); the rest passed")
        sys.exit(SKIP_CODE)
    print("PASS")


def write_idx_dataset(folder, n_train=64, n_test=32, seed=0, gz=False):
    """A small learnable MNIST-shaped data set in the IDX format (numpy only):
    each class is a noisy fixed 28x28 pattern. Returns `folder`."""
    import gzip
    import struct
    import numpy as np
    rng = np.random.RandomState(seed)
    protos = rng.randint(0, 256, size=(10, 28, 28))
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = rng.randint(0, 10, size=n)
        x = np.clip(protos[y] * 0.6 + rng.randint(0, 100, size=(n, 28, 28)), 0, 255)
        for kind, array in (("images-idx3", x), ("labels-idx1", y)):
            array = np.asarray(array, dtype=np.uint8)
            data = struct.pack(">I", 0x800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
            path = os.path.join(folder, f"{split}-{kind}-ubyte")
            if gz:
                with gzip.open(path + ".gz", "wb") as f:
                    f.write(data)
            else:
                with open(path, "wb") as f:
                    f.write(data)
    return folder
