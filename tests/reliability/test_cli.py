"""Refused command lines: one checked line, exit status 1 (2 for syntax), no traceback, no change.

Every case runs ``fredask.cli.main`` in-process on tiny stores built with
fredask's own API and hashes the whole folder (inputs, store, output) before
and after: a refused command leaves the disk exactly as it was.  A few cases
run ``fredask`` in a subprocess: the real exit status and stderr, the speed of
``--help``, and the imports building the parser costs.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.collections import g2

from fredask.cli import audit, main, one_line
from fredask.store import FeatureStore
from fredask.store.ingest import ingest
from fredask.store.structures import read_structures

NAMES = ("H2O", "CH4", "C6H6", "NH3", "C2H6", "CH3OH", "C4H4O", "C5H5N", "CO2", "HCOOH")
#: Atoms of the ten molecules.
N_ATOMS = 66


def tree_hash(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: relative path -> content digest ("dir" for folders)."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        key = str(path.relative_to(root))
        if path.is_dir():
            out[key] = "dir"
        else:
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``fredask ARGV`` in-process: (exit status, stdout, stderr) as a shell would see them.

    A ``SystemExit`` with a message is what Python prints to stderr and exits 1 with.
    """
    try:
        status = main([str(a) for a in argv])
        message = None
    except SystemExit as exit_:
        status, message = exit_.code, None
        if isinstance(exit_.code, str):
            status, message = 1, exit_.code
    out, err = capsys.readouterr()
    if message is not None:
        err += message + "\n"
    return status, out, err


def ingest_argv(structures, store, features, *options) -> list:
    """``fredask ingest STRUCTURES --store STORE --features FEATURES [OPTIONS]``."""
    return ["ingest", structures, "--store", store, "--features", features, *options]


def refused(argv, capsys, root: Path, status: int = 1) -> str:
    """Run a command that must be refused; return its one stderr line.

    Checks the exit status, that stderr has no traceback and one line only, and
    that nothing under ``root`` changed.
    """
    before = tree_hash(root)
    code, _, err = run(argv, capsys)
    assert code == status, (code, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert tree_hash(root) == before, "the refused command changed the disk"
    return lines[0]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Built once: ten molecules, features of their atoms, and a store of both."""
    root = tmp_path_factory.mktemp("template")
    atoms = [g2[name] for name in NAMES]
    for i, a in enumerate(atoms):
        a.info["subset"] = ("odd", "even")[i % 2]
    ase.io.write(root / "mol.xyz", atoms, format="extxyz")
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(N_ATOMS, 4))
    np.save(root / "a.npy", np.tanh(latent @ rng.normal(size=(4, 6))))
    np.save(root / "b.npy", np.tanh(latent @ rng.normal(size=(4, 5))) + 1)
    table = read_structures([root / "mol.xyz"])
    ingest(root / "s.zarr", table, {"a": root / "a.npy", "b": root / "b.npy"})
    return root


@pytest.fixture
def files(tmp_path, template):
    """Ten molecules in ``mol.xyz`` and features ``a.npy``, ``b.npy`` of their atoms."""
    for name in ("mol.xyz", "a.npy", "b.npy"):
        shutil.copy2(template / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def store(files, template):
    """A store of the molecules with features a and b (its sources: ``files``' copies)."""
    shutil.copytree(template / "s.zarr", files / "s.zarr")
    return files / "s.zarr"


# -- ingest --------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [N_ATOMS - 1, N_ATOMS + 1])
def test_ingest_a_row_too_few_or_too_many(files, capsys, rows):
    np.save(files / "c.npy", np.zeros((rows, 3)))
    line = refused(
        ingest_argv(files / "mol.xyz", files / "new.zarr", "c=" + str(files / "c.npy")),
        capsys,
        files,
    )
    assert line == (
        f"fredask ingest: features file {files / 'c.npy'}: shape ({rows}, 3); the structures "
        f"have {N_ATOMS} atoms, so expected ({N_ATOMS}, n_features)"
    )
    assert not (files / "new.zarr").exists()


def test_ingest_a_missing_features_file(files, capsys):
    line = refused(
        ["ingest", files / "mol.xyz", "--store", files / "new.zarr", "--features", "c=nope.npy"],
        capsys,
        files,
    )
    assert line == "fredask ingest: features file nope.npy does not exist"


def test_ingest_a_missing_structure_file(files, capsys):
    line = refused(
        ingest_argv(files / "gone.xyz", files / "new.zarr", f"a={files / 'a.npy'}"),
        capsys,
        files,
    )
    assert line == f"fredask ingest: structure file {files / 'gone.xyz'} does not exist"


def test_ingest_into_a_folder_that_is_not_a_store(files, capsys):
    (files / "foreign").mkdir()
    (files / "foreign" / "notes.txt").write_text("mine")
    line = refused(
        ingest_argv(files / "mol.xyz", files / "foreign", f"a={files / 'a.npy'}"),
        capsys,
        files,
    )
    assert line.startswith(f"fredask ingest: {files / 'foreign'}: not a fredask store")


def test_ingest_structures_that_changed(store, capsys):
    atoms = ase.io.read(store.parent / "mol.xyz", index=":")
    atoms[3].positions[0, 0] += 0.1
    ase.io.write(store.parent / "moved.xyz", atoms, format="extxyz")
    line = refused(
        ingest_argv(store.parent / "moved.xyz", store, f"c={store.parent / 'a.npy'}"),
        capsys,
        store.parent,
    )
    assert line == (
        f"fredask ingest: the structure files differ from the store {store} at 1 structures, "
        "first at structure 3: not the same structures in the same order"
    )


def test_ingest_other_data_under_a_stored_name(files, capsys):
    store = files / "own.zarr"  # its features' source is files/a.npy
    ingest(store, read_structures([files / "mol.xyz"]), {"a": files / "a.npy"})
    np.save(store.parent / "other.npy", np.ones((N_ATOMS, 6)))
    argv = ["ingest", store.parent / "mol.xyz", "--store", store]
    line = refused([*argv, "--features", f"a={store.parent / 'other.npy'}"], capsys, store.parent)
    assert line.startswith(
        f"fredask ingest: {store}: features 'a' exist from file {store.parent / 'a.npy'} "
    )
    assert f"not from file {store.parent / 'other.npy'}" in line and "--overwrite" in line
    # the same file again is skipped, said in one line; --overwrite replaces
    code, _, err = run([*argv, "--features", f"a={store.parent / 'a.npy'}"], capsys)
    assert code == 0 and err.strip().splitlines() == [
        f"features 'a' already hold file {store.parent / 'a.npy'} (hash cd7ba554e086): kept"
    ]
    code, _, _ = run(
        [*argv, "--features", f"a={store.parent / 'other.npy'}", "--overwrite"], capsys
    )
    assert code == 0
    np.testing.assert_array_equal(FeatureStore.open(store).features("a")[:], np.ones((N_ATOMS, 6)))


def test_ingest_key_of_a_single_array_file(files, capsys):
    line = refused(
        ingest_argv(files / "mol.xyz", files / "new.zarr", f"a={files / 'a.npy'}", "--key", "x"),
        capsys,
        files,
    )
    assert line == "fredask ingest: --key applies to .npz, .pt and .h5 files only; leave it out"


def test_ingest_while_another_writer_holds_the_name(store, capsys):
    opened = FeatureStore.open(store, mode="a")
    with opened.writing("c"):
        line = refused(
            [
                "ingest",
                store.parent / "mol.xyz",
                "--store",
                store,
                "--features",
                f"c={store.parent / 'a.npy'}",
            ],
            capsys,
            store.parent,
        )
    assert line == (
        f"fredask ingest: {store}: another process is writing features 'c'; wait for it or stop it"
    )


# -- extract -------------------------------------------------------------------------


def _extract(files, *options):
    return ["extract", files / "mol.xyz", "--store", files / "new.zarr", *options]


def test_extract_an_unknown_model_version_leaves_no_store(files, capsys):
    line = refused(_extract(files, "--model", "chgnet:9.9.9"), capsys, files)
    assert line == "fredask extract: unknown CHGNet model '9.9.9'; known: 0.3.0, 0.2.0, r2scan"
    assert not (files / "new.zarr").exists()


def test_extract_an_unknown_prefix_lists_the_specs(files, capsys):
    line = refused(_extract(files, "--model", "chgnet:0.3.0", "--model", "orb:v3"), capsys, files)
    assert line.startswith("fredask extract: unknown model prefix 'orb' in 'orb:v3'; known: ")
    assert "chgnet:0.3.0" in line and "sevenn:7net-mf-0" in line and "mace:PATH" in line


def test_extract_a_mistyped_sevennet_model(files, capsys):
    line = refused(_extract(files, "--model", "sevenn:7net-O"), capsys, files)
    assert line == (
        "fredask extract: unknown SevenNet model '7net-O'; known: 7net-0, 7net-0_22may2024, "
        "7net-l3i5, 7net-mf-0"
    )


def test_extract_multi_fidelity_sevennet_needs_its_modal(files, capsys):
    line = refused(_extract(files, "--model", "sevenn:7net-mf-0"), capsys, files)
    assert line == "fredask extract: SevenNet 7net-mf-0 needs modal= one of PBE, R2SCAN, got None"
    line = refused(_extract(files, "--model", "sevenn:7net-mf-0", "--modal", "HSE"), capsys, files)
    assert line.endswith("needs modal= one of PBE, R2SCAN, got 'HSE'")


def test_extract_an_option_no_model_takes(files, capsys):
    line = refused(
        _extract(files, "--model", "chgnet:0.3.0", "--option", "modal=PBE"), capsys, files
    )
    assert line == (
        "fredask extract: no --model takes the option modal "
        "(chgnet:0.3.0 takes layer, vacuum, batch_atoms, device)"
    )


def test_extract_a_bad_option_value(files, capsys):
    line = refused(
        _extract(files, "--model", "chgnet:0.3.0", "--option", "vacuum=-1"), capsys, files
    )
    assert line == "fredask extract: vacuum must be positive, got -1"


def test_extract_a_missing_model_file(files, capsys):
    line = refused(_extract(files, "--model", f"mace:{files / 'absent.model'}"), capsys, files)
    assert line.startswith("fredask extract: mace-absent: ")
    assert ("model file" in line and "absent.model does not exist" in line) or "pip install" in line


def test_extract_an_element_the_model_does_not_cover(files, capsys):
    pytest.importorskip("chgnet")
    molecules = ase.io.read(files / "mol.xyz", index=":")
    americium = Atoms("NaAm", positions=[[0, 0, 0], [0, 0, 2.5]])
    ase.io.write(files / "am.xyz", [molecules[0], americium], format="extxyz")
    argv = ["extract", files / "am.xyz", "--store", files / "new.zarr", "--model", "chgnet:0.3.0"]
    line = refused(argv, capsys, files)
    assert line == (
        f"fredask extract: chgnet-0.3.0 does not cover element Am (Z=95) of structure 1 "
        f"({files / 'am.xyz'}, index 1); pass --skip-errors to leave such structures NaN"
    )


def test_extract_batch_atoms_must_be_positive(files, capsys):
    line = refused(_extract(files, "--model", "chgnet:0.3.0", "--batch-atoms", "0"), capsys, files)
    assert line == "fredask extract: --batch-atoms 0: must be a positive integer"


def test_extract_into_a_folder_that_cannot_be_created(files, capsys):
    argv = ["extract", files / "mol.xyz", "--store", files / "a.npy" / "s.zarr"]
    line = refused([*argv, "--model", "chgnet:0.3.0"], capsys, files)
    assert line == (
        f"fredask extract: store {files / 'a.npy' / 's.zarr'}: {files / 'a.npy'} is a file, "
        "not a folder"
    )


# -- compare, cumulants --------------------------------------------------------------


def _compare(store, *options):
    return ["compare", store, "--output", store.parent / "out", "--cluster", "sync", *options]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--n-test", "-5"], "--n-test -5: must be a positive integer"),
        (
            ["--metric", "lfre", "--n-local-points", "0"],
            "--n-local-points 0: must be a positive integer",
        ),
        (
            ["--n-test", "20"],
            "--n-test applies with --split paper only (the default split is scikit-matter's "
            "50/50 of all rows); leave it out",
        ),
        (
            ["--split", "default", "--seed", "3"],
            "--seed applies with --split paper only (the default split is scikit-matter's "
            "50/50 of all rows); leave it out",
        ),
        (["--order", "3"], "--order applies with --level structure only; leave it out"),
        (
            ["--order", "3", "--order-matrix", "a"],
            "--order and --order-matrix apply with --level structure only; leave it out",
        ),
        (
            ["--n-local-points", "5"],
            "--n-local-points applies to --metric lfre and mutual_knn only; leave it out",
        ),
        (
            ["--metric", "lfre", "--method", "gram"],
            "--method applies to --metric gfre and gfrd only; leave it out",
        ),
        (["--level", "structure", "--order", "9"], "--order 9: order must lie in 1..8"),
    ],
)
def test_compare_options_out_of_range_or_ignored(store, capsys, options, message):
    line = refused(_compare(store, *options), capsys, store.parent)
    assert line == f"fredask compare: {message}"


def test_compare_more_neighbours_than_train_rows(store, capsys):
    options = ["--metric", "gfre", "lfre", "--split", "paper", "--n-test", "20"]
    line = refused(_compare(store, *options, "--n-local-points", "500"), capsys, store.parent)
    assert line.startswith("fredask compare: ")
    assert "500" in line and "train" in line
    assert not (store.parent / "out").exists()  # not even the GFRE before the LFRE


def test_compare_more_test_rows_than_atoms(store, capsys):
    line = refused(_compare(store, "--split", "paper", "--n-test", "5000"), capsys, store.parent)
    assert line.startswith("fredask compare: --split paper --n-test 5000: ")


def test_compare_an_unwritable_output(store, capsys):
    argv = ["compare", store, "--output", store.parent / "a.npy" / "out", "--cluster", "sync"]
    line = refused(argv, capsys, store.parent)
    assert line == (
        f"fredask compare: --output {store.parent / 'a.npy' / 'out'}: "
        f"{store.parent / 'a.npy'} is a file, not a folder"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_compare_an_output_in_a_read_only_folder(store, capsys):
    locked = store.parent / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = refused(["compare", store, "--output", locked / "out"], capsys, store.parent)
    finally:
        locked.chmod(0o700)
    assert line == (
        f"fredask compare: --output {locked / 'out'}: permission denied ({locked} is not writable)"
    )


def test_compare_a_store_without_its_structures_group(store, capsys):
    shutil.rmtree(store / "structures")
    line = refused(_compare(store), capsys, store.parent)
    assert line.startswith(f"fredask compare: {store}")
    assert "structures" in line and "KeyError" not in line


def test_compare_a_missing_store(files, capsys):
    line = refused(_compare(files / "none.zarr"), capsys, files)
    assert line == f"fredask compare: store {files / 'none.zarr'} does not exist"


def test_structure_level_refused_before_any_cumulant_is_written(store, capsys):
    options = ["--level", "structure", "--n-test", "4", "--n-local-points", "50"]
    line = refused(_compare(store, *options), capsys, store.parent)
    assert line.startswith("fredask compare: ") and "50" in line
    assert FeatureStore.open(store).structure_feature_names() == []


def test_cumulants_of_an_unknown_model(store, capsys):
    line = refused(["cumulants", store, "--model", "a", "--model", "z"], capsys, store.parent)
    assert (
        line == "fredask cumulants: --model z: no such complete features; the store has ['a', 'b']"
    )


def test_cumulants_order_out_of_range(store, capsys):
    line = refused(["cumulants", store, "--order", "0"], capsys, store.parent)
    assert line == "fredask cumulants: --order 0: order must lie in 1..8"


# -- verify, outliers ----------------------------------------------------------------


def test_verify_a_sound_store(store, capsys):
    code, out, err = run(["verify", store], capsys)
    assert code == 0 and err == ""
    assert out.strip().endswith(
        "verified 10 structures, 66 atoms and 2 features arrays (a, b): no problem found"
    )


def test_verify_a_store_with_a_deleted_chunk(store, capsys):
    chunk = next(
        p
        for p in sorted((store / "features" / "a").rglob("*"))
        if p.is_file() and p.name != "zarr.json"
    )
    chunk.unlink()
    code, out, err = run(["verify", store], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"fredask verify: {store}: {len(out.splitlines())} problem"
        + ("s" if len(out.splitlines()) > 1 else "")
        + " (listed above)"
    ]
    assert "features/a" in out


def test_outliers_lists_short_bonds(files, capsys):
    molecules = ase.io.read(files / "mol.xyz", index=":")
    squeezed = Atoms("SiO", positions=[[0, 0, 0], [0, 0, 0.9]])
    squeezed.info["subset"] = "odd"
    ase.io.write(files / "mixed.xyz", [molecules[0], squeezed], format="extxyz")
    FeatureStore.create(files / "m.zarr", read_structures([files / "mixed.xyz"]))
    code, out, _ = run(["outliers", files / "m.zarr"], capsys)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0] == "1 structures with shortest bond below 0.75x the sum of covalent radii:"
    assert lines[1].split()[:4] == ["1", str(files / "mixed.xyz"), "OSi", "Si-O"]
    code, out, _ = run(["outliers", files / "m.zarr", "--ratio", "0.1"], capsys)
    assert out.strip() == "no structure with shortest bond below 0.1x the sum of covalent radii"
    line = refused(["outliers", files / "m.zarr", "--ratio", "0"], capsys, files)
    assert line == "fredask outliers: short-bond ratio must be a finite number above 0, got 0.0"


def test_the_demo_line_of_left_out_structures():
    import pandas as pd

    table = pd.DataFrame({"source_file": [f"aflow:{i}" for i in range(7)]})
    assert audit.left_out_line(table, "a rule") == (
        "left out 7 structures with a rule: aflow:0, aflow:1, aflow:2, aflow:3, aflow:4, ..."
    )


# -- the failure handling itself -----------------------------------------------------


def test_a_full_disk_names_the_path(store, capsys, monkeypatch):
    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(store / "features" / "a"))

    monkeypatch.setattr(audit, "verify", full)
    line = refused(["verify", store], capsys, store.parent)
    assert line == f"fredask verify: {store / 'features' / 'a'}: No space left on device"
    assert (
        one_line(PermissionError(errno.EACCES, "Permission denied", "/x"))
        == "/x: Permission denied"
    )


def test_ctrl_c_is_one_line_and_130(store, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(audit, "verify", interrupted)
    code, _, err = run(["verify", store], capsys)
    assert code == 130 and err == "fredask verify: interrupted\n"


def test_debug_shows_the_traceback(files):
    from fredask.cli.checks import CommandError

    with pytest.raises(CommandError, match="does not exist"):
        main(["--debug", "compare", str(files / "none.zarr")])


def test_argument_syntax_is_a_usage_error(store, capsys):
    for argv in (["compare"], ["compare", store, "--n-local-points", "5.5"], ["nope"]):
        code, _, err = run(argv, capsys)
        assert code == 2 and "usage: fredask" in err and "Traceback" not in err


def _fredask(*argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fredask", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_the_real_exit_status_and_stderr(files):
    done = _fredask("compare", str(files / "none.zarr"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"fredask compare: store {files / 'none.zarr'} does not exist\n"


def test_help_is_fast():
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for argv in (["--help"], ["compare", "--help"], ["compare"]):
        done = _fredask(*argv)
        assert done.returncode == (2 if argv == ["compare"] else 0), done.stderr
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu / 3 < 0.5, f"{cpu / 3:.2f} s of CPU per call"


def test_the_parser_imports_nothing_heavy():
    code = (
        "import sys; import fredask, fredask.cli; fredask.cli.build_parser(); "
        "heavy = ('dask', 'distributed', 'zarr', 'torch', 'matplotlib', 'pandas', 'numpy', "
        "'fredask.metrics', 'fredask.store', 'fredask.cluster.clients'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- demo ----------------------------------------------------------------------------


def test_demo_refuses_before_reading_anything(files, capsys):
    line = refused(["demo", "--output", files / "a.npy" / "out"], capsys, files)
    assert line == (
        f"fredask demo: --output {files / 'a.npy' / 'out'}: {files / 'a.npy'} is a file, "
        "not a folder"
    )
    line = refused(["demo", "--output", files / "out", "--model", "chgnet:9.9.9"], capsys, files)
    assert line == "fredask demo: unknown CHGNet model '9.9.9'; known: 0.3.0, 0.2.0, r2scan"


def test_demo_leaves_out_short_bonds_and_says_so(tmp_path, capsys, monkeypatch):
    import json

    from fredask.cli import models
    from fredask.extract import TorchHookExtractor
    from fredask.extract.testing import make_tiny_calculator
    from fredask.store import datasets

    def shipped():
        atoms = []
        for name in (*NAMES, "CH3CH2OH", "CH3COOH", "C4H4S", "CH3CN"):
            molecule = g2[name]
            molecule.info.update(subset=("odd", "even")[len(atoms) % 2], name=name)
            atoms.append(molecule)
        squeezed = Atoms("SiO", positions=[[0, 0, 0], [0, 0, 0.9]])
        squeezed.info.update(subset="odd", name="SiO-squeezed")
        return [*atoms[:5], squeezed, *atoms[5:]]

    tiny = [
        TorchHookExtractor(make_tiny_calculator, "embed", name="tiny-embed"),
        TorchHookExtractor(make_tiny_calculator, "mix", pre_hook=True, name="tiny-mix"),
    ]
    monkeypatch.setattr(datasets, "shipped_structures", shipped)
    monkeypatch.setattr(models, "build_extractors", lambda specs, options: tiny)
    code, out, err = run(["demo", "--output", tmp_path / "out", "--cluster", "sync"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == (
        "left out 1 structures with shortest bond below 0.75x the sum of covalent radii: "
        "odd:SiO-squeezed"
    )
    store = FeatureStore.open(tmp_path / "out" / "store.zarr")
    assert store.n_structures == len(NAMES) + 4
    saved = json.loads((tmp_path / "out" / "lfre.json").read_text())["metadata"]
    assert saved["left_out"]["structures"] == ["odd:SiO-squeezed"]
    assert saved["split"] == "paper" and saved["seed"] == 0
    for metric in ("gfre", "lfre", "mutual_knn"):  # intervals over structures, not for cka
        bootstrap = json.loads((tmp_path / "out" / f"{metric}.json").read_text())["bootstrap"]
        assert bootstrap["n_resamples"] == 200 and bootstrap["unit"] == "structure"
    assert json.loads((tmp_path / "out" / "cka.json").read_text())["bootstrap"] is None


def test_the_parsers_choices_are_the_librarys():
    from fredask.bench.stages import STAGES
    from fredask.cli import bench, compare
    from fredask.compare.matrix import METRICS

    assert compare.METRICS == METRICS and bench.STAGES == STAGES


def test_bench_refuses_an_unwritable_output_before_any_data(files, capsys):
    argv = ["bench", "--output", files / "a.npy" / "b", "--data-dir", files / "data"]
    line = refused(argv, capsys, files)
    assert line == (
        f"fredask bench: --output {files / 'a.npy' / 'b'}: {files / 'a.npy'} is a file, "
        "not a folder"
    )


def test_structure_level_order_above_the_stored_cumulants(store, capsys):
    code, _, err = run(
        ["cumulants", store, "--order", "2", "--model", "a", "--cluster", "sync"], capsys
    )
    assert code == 0, err
    options = ["--level", "structure", "--n-test", "4", "--order", "3"]
    line = refused(_compare(store, *options), capsys, store.parent)
    assert line == (
        "fredask compare: --order 3: the stored cumulants of 'a' go to order 2; compute them "
        "with `fredask cumulants --order 3 --overwrite` first"
    )


def test_extract_runs_after_its_checks_and_passes_overwrite(files, capsys, monkeypatch):
    from fredask.cli import store as store_commands
    from fredask.extract import TorchHookExtractor, runner
    from fredask.extract.testing import make_tiny_calculator

    tiny = TorchHookExtractor(make_tiny_calculator, "embed", name="tiny-embed")
    monkeypatch.setattr(store_commands, "build_extractors", lambda specs, options: [tiny])
    argv = ["extract", files / "mol.xyz", "--store", files / "new.zarr", "--model", "x:y"]
    code, out, err = run([*argv, "--cluster", "sync"], capsys)
    assert code == 0, err
    assert out.startswith("tiny-embed: 1 of 1 chunks computed in ")
    calls = []
    real = runner.extract
    monkeypatch.setattr(runner, "extract", lambda *a, **k: calls.append(k) or real(*a, **k))
    code, out, err = run([*argv, "--cluster", "sync", "--overwrite"], capsys)
    assert code == 0, err
    assert calls[0]["overwrite"] is True and calls[0]["skip_errors"] is False
    assert FeatureStore.open(files / "new.zarr").feature_names() == ["tiny-embed"]
