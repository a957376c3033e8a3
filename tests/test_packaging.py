"""A non-editable install (a wheel, into a fresh virtual environment) has what the package ships."""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {"slurm-cpu", "slurm-gpu", "pbs-cpu", "pbs-gpu"}


@pytest.mark.timeout(600)
def test_wheel_install_lists_the_shipped_cluster_profiles(tmp_path):
    # build from a copy of what the wheel is made of: no build/ or egg-info of earlier builds
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "fredask", source / "fredask", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("fredask-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # the wheel itself, installed by this environment's pip into the new one, without deps
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--target",
            site,
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # the dependencies come from this environment's site-packages (its editable
    # fredask is a .pth hook, which a PYTHONPATH entry does not run)
    env = {"PYTHONPATH": sysconfig.get_path("purelib"), "PATH": "/usr/bin:/bin"}
    listed = subprocess.run(
        [
            python,
            "-c",
            "import fredask, fredask.cluster as c; print(fredask.__file__);"
            "print(' '.join(sorted(c.available_profiles())))",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    ).stdout.splitlines()
    assert listed[0].startswith(site), listed  # the installed copy, not the source tree
    assert SHIPPED <= set(listed[1].split()), listed
