"""Plain user scripts, without an ``if __name__ == "__main__":`` guard, run on the embedded cluster.

Worker processes are spawned; spawn re-runs an unguarded main script in each
of them unless fredask hides it (fredask.cluster.local).  These run a script
as a new user writes one: from a file and from standard input.
"""

import subprocess
import sys

SCRIPT = """
import numpy as np
from fredask.compare import reconstruction_matrix
rng = np.random.default_rng(0)
a = rng.normal(size=(2000, 8))
b = np.tanh(a @ rng.normal(size=(8, 5)))
result = reconstruction_matrix({"a": a, "b": b}, "gfre", progress=False)
m = result.matrix
print("GFRE", round(float(m.loc["b", "a"]), 6), round(float(m.loc["a", "b"]), 6))
print("FILE", __file__)
"""


def _run(tmp_path, *args, stdin=None):
    done = subprocess.run(
        [sys.executable, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def test_unguarded_script_file_runs_on_the_embedded_cluster(tmp_path):
    script = tmp_path / "plain.py"
    script.write_text(SCRIPT)
    out = _run(tmp_path, str(script))
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    from_b, from_a = map(float, lines["GFRE"].split())
    assert 0 < from_a < 1 and 0 < from_b < 1
    assert lines["FILE"] == str(script)  # the script's own __file__ is left as it was


def test_unguarded_script_from_standard_input(tmp_path):
    out = _run(tmp_path, "-", stdin=SCRIPT)
    assert "GFRE" in out and "FILE <stdin>" in out
