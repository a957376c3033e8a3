"""CKA, CCA and Procrustes from the one pass: against direct in-memory formulas and closed forms.

The references are computed here from the test rows themselves (centred on
their own mean): no factor, no pass, no fredask code.
"""

import dask.array as da
import numpy as np
import pytest
import scipy.linalg
import zarr

from fredask.compare import reconstruction_matrix
from fredask.stats.splits import Split


def _centred(values, rows):
    block = np.asarray(values, dtype=np.float64)[rows]
    return block - block.mean(axis=0)


def direct_cka(x, y):
    return np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def direct_correlations(x, y, kept_variance=None):
    if kept_variance is None:
        qx, qy = scipy.linalg.orth(x), scipy.linalg.orth(y)
    else:  # SVCCA: leading principal directions explaining the share
        bases = []
        for block in (x, y):
            u, s, _ = np.linalg.svd(block, full_matrices=False)
            share = np.cumsum(s**2) / np.sum(s**2)
            bases.append(u[:, : int(np.argmax(share >= kept_variance - 1e-12)) + 1])
        qx, qy = bases
    return np.linalg.svd(qx.T @ qy, compute_uv=False)


def direct_procrustes(x, y):
    nuclear = np.linalg.svd(x.T @ y, compute_uv=False).sum()
    return 2 - 2 * nuclear / (np.linalg.norm(x) * np.linalg.norm(y))


DIRECT = {
    "cka": direct_cka,
    "cca": lambda x, y: np.mean(direct_correlations(x, y) ** 2),
    "procrustes": direct_procrustes,
}


@pytest.fixture(scope="module")
def models():
    """p != q, float32 and float64, a rank-deficient model, a shifted and scaled one."""
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(700, 5))
    a = np.tanh(latent @ rng.normal(size=(5, 6))) + 0.1 * rng.normal(size=(700, 6))
    b = (latent[:, :3] @ rng.normal(size=(3, 9)) + 0.3 * rng.normal(size=(700, 9))).astype(
        np.float32
    )
    c = latent @ rng.normal(size=(5, 4))
    c = np.concatenate([c, c[:, :2] * 2.0 - c[:, 1:3]], axis=1)  # rank 4 of 6 columns
    d = 1e3 * (latent[:, 1:] ** 2) + 50.0
    return {"a": a, "b": b, "c": c, "d": d}


@pytest.mark.parametrize("metric", ["cka", "cca", "procrustes"])
@pytest.mark.parametrize("method", ["qr", "gram"])
def test_matrix_equals_direct_formulas(models, metric, method):
    train = np.arange(0, 700, 3)
    split = Split(train_idx=train, test_idx=np.setdiff1d(np.arange(700), train))
    result = reconstruction_matrix(
        models, metric, split=split, method=method, client="threads", progress=False
    )
    tolerance = 1e-10 if method == "qr" else 1e-7  # the Gram path squares the condition
    for source in models:
        for target in models:
            x = _centred(models[source], split.test_idx)
            y = _centred(models[target], split.test_idx)
            expected = DIRECT[metric](x, y)
            assert result.matrix.loc[source, target] == pytest.approx(
                expected, rel=tolerance, abs=tolerance
            ), (source, target)
    np.testing.assert_allclose(result.matrix, result.matrix.T, rtol=0, atol=1e-12)
    assert result.errors is None and result.alphas.isna().all().all()


def test_cca_spectrum_and_svcca(models):
    from fredask.measures.similarity import canonical_correlations, pair_similarity

    x, y = _centred(models["a"], slice(None)), _centred(models["c"], slice(None))
    rho = canonical_correlations(x, y)
    assert rho.size == 4  # min(rank a = 6, rank c = 4)
    np.testing.assert_allclose(rho, direct_correlations(x, y), rtol=0, atol=1e-12)
    for kept in (0.5, 0.9, 0.99):
        found = pair_similarity("cca", x, y, kept_variance=kept)
        expected = direct_correlations(x, y, kept)
        np.testing.assert_allclose(found.spectrum, expected, rtol=0, atol=1e-12)
    matrix = reconstruction_matrix(models, "cca", kept_variance=0.9, progress=False).matrix
    test = _default_test(700)
    x, y = _centred(models["a"], test), _centred(models["c"], test)
    expected = np.mean(direct_correlations(x, y, 0.9) ** 2)
    assert matrix.loc["a", "c"] == pytest.approx(expected, rel=1e-10)


def _default_test(n_rows):
    from fredask.stats.splits import resolve_split

    return resolve_split(n_rows).test_idx


def test_dask_and_zarr_inputs_give_the_numpy_numbers(models, tmp_path):
    group = zarr.open_group(tmp_path / "z.zarr", mode="w")
    stored = {}
    for name, values in models.items():
        shape, chunks = values.shape, (128, values.shape[1])
        stored[name] = group.create_array(name, shape=shape, chunks=chunks, dtype=values.dtype)
        stored[name][:] = values
    chunked = {name: da.from_array(v, chunks=(100, -1)) for name, v in models.items()}
    for metric in ("cka", "cca", "procrustes"):
        reference = reconstruction_matrix(models, metric, client="sync", progress=False).matrix
        for inputs in (chunked, stored):
            got = reconstruction_matrix(inputs, metric, client="threads", progress=False).matrix
            np.testing.assert_allclose(got, reference, rtol=1e-12, atol=1e-14)


def test_options_are_checked(models):
    with pytest.raises(ValueError, match="kept_variance is an option of metric='cca' only"):
        reconstruction_matrix(models, "gfre", kept_variance=0.5, progress=False)
    with pytest.raises(ValueError, match=r"kept_variance must be in \(0, 1\]"):
        reconstruction_matrix(models, "cca", kept_variance=1.5, progress=False)
    with pytest.raises(ValueError, match="cka: no scaler is applied"):
        from skmatter.preprocessing import StandardFlexibleScaler

        reconstruction_matrix(models, "cka", scaler=StandardFlexibleScaler(), progress=False)


@pytest.mark.slow
def test_closed_forms_at_a_million_rows():
    # X white (p = 4), Y = X A + sigma E (q = 6): population canonical correlations
    # s_i / sqrt(s_i^2 + sigma^2) (s_i: singular values of A), CKA
    # ||A||_F^2 / (||I_p||_F ||A^T A + sigma^2 I_q||_F)
    n, sigma = 1_000_000, 0.7
    rng = np.random.default_rng(5)
    a = rng.normal(size=(4, 6))
    x = da.random.default_rng(6).standard_normal((n, 4), chunks=(131_072, 4))
    noise = da.random.default_rng(7).standard_normal((n, 6), chunks=(131_072, 6))
    y = x @ a + sigma * noise
    split = Split(train_idx=np.arange(10), test_idx=np.arange(10, n))
    features = {"x": x, "y": y}
    cca = reconstruction_matrix(features, "cca", split=split, client="threads", progress=False)
    s = np.linalg.svd(a, compute_uv=False)
    expected_rho = s / np.sqrt(s**2 + sigma**2)
    assert cca.matrix.loc["x", "y"] == pytest.approx(np.mean(expected_rho**2), abs=2e-3)
    cka = reconstruction_matrix(features, "cka", split=split, client="threads", progress=False)
    covariance_y = a.T @ a + sigma**2 * np.eye(6)
    expected = np.linalg.norm(a) ** 2 / (2.0 * np.linalg.norm(covariance_y))
    assert cka.matrix.loc["x", "y"] == pytest.approx(expected, rel=5e-3)
    debiased = reconstruction_matrix(
        features, "cka", split=split, debiased=True, client="threads", progress=False
    )
    assert debiased.matrix.loc["x", "y"] == pytest.approx(expected, rel=5e-3)


def test_cli_similarity_metrics(tmp_path, capsys):
    import json

    from fredask.cli import main
    from fredask.store.datasets import write_synthetic_store

    store = tmp_path / "s.zarr"
    write_synthetic_store(store, n_rows=600, chunk_rows=256)
    argv = ["compare", str(store), "--cluster", "threads", "--output", str(tmp_path / "out")]
    main([*argv, "--metric", "cka", "cca", "procrustes", "--kept-variance", "0.95"])
    for metric in ("cka", "cca", "procrustes"):
        saved = json.loads((tmp_path / "out" / f"{metric}.json").read_text())
        assert saved["metric"] == metric and saved["errors"] == {}
        assert (tmp_path / "out" / f"{metric}.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="--kept-variance applies to --metric cca"):
        main([*argv, "--metric", "cka", "--kept-variance", "0.9"])
    biased = json.loads((tmp_path / "out" / "cka.json").read_text())["paper"]
    main([*argv, "--metric", "cka", "--debiased", "--output", str(tmp_path / "debiased")])
    debiased = json.loads((tmp_path / "debiased" / "cka.json").read_text())["paper"]
    pair = debiased["sharp-64"]["smooth-64"]
    assert pair["A_to_B"] != biased["sharp-64"]["smooth-64"]["A_to_B"]
    with pytest.raises(SystemExit, match="--debiased applies to --metric cka"):
        main([*argv, "--metric", "cca", "--debiased"])


def test_global_matrices_equal_the_separate_matrices_from_one_pass():
    """GFRE, GFRD and the similarities from one pass equal each metric computed alone."""
    from fredask.compare.matrix import global_matrices, reconstruction_matrix

    rng = np.random.default_rng(11)
    x = rng.normal(size=(700, 6))
    data = {"x": x, "y": (x[:, :4] @ rng.normal(size=(4, 5))).astype(np.float32), "z": x[:, :2]}
    together = global_matrices(data, client="sync", progress=False, kept_variance=0.99)
    debiased = global_matrices(data, ("cka",), debiased=True, client="sync", progress=False)
    alone = reconstruction_matrix(data, "cka", debiased=True, client="sync", progress=False)
    np.testing.assert_allclose(debiased["cka"].matrix, alone.matrix, rtol=1e-10)
    assert list(together) == ["gfre", "gfrd", "cka", "cca", "procrustes"]
    for metric, result in together.items():
        options = {"kept_variance": 0.99} if metric == "cca" else {}
        alone = reconstruction_matrix(data, metric, client="sync", progress=False, **options)
        np.testing.assert_allclose(result.matrix, alone.matrix, rtol=1e-10, atol=1e-12)
        assert (result.errors is None) == (alone.errors is None)


def direct_debiased_cka(x, y):
    """Song et al.'s unbiased HSIC on the n x n kernels of the rows as given (not centred)."""
    n = x.shape[0]

    def hsic(k, m):
        k, m = k.copy(), m.copy()
        np.fill_diagonal(k, 0.0)
        np.fill_diagonal(m, 0.0)
        one = np.ones(n)
        return (
            np.sum(k * m)
            + (one @ k @ one) * (one @ m @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ k @ m @ one)
        ) / (n * (n - 3))

    kx, ky = x @ x.T, y @ y.T
    return hsic(kx, ky) / np.sqrt(hsic(kx, kx) * hsic(ky, ky))


@pytest.mark.parametrize("method", ["qr", "gram"])
def test_debiased_cka_equals_the_kernel_formula(models, method):
    """Against the n x n kernel formula on the raw (shifted, scaled, float32) test rows."""
    split = Split(train_idx=np.arange(0, 300), test_idx=np.arange(300, 700))
    result = reconstruction_matrix(
        models, "cka", split=split, method=method, debiased=True, client="sync", progress=False
    )
    biased = reconstruction_matrix(models, "cka", split=split, client="sync", progress=False)
    rtol = 1e-10 if method == "qr" else 1e-7
    for a in models:
        for b in models:
            x = np.asarray(models[a], np.float64)[split.test_idx]
            y = np.asarray(models[b], np.float64)[split.test_idx]
            expected = direct_debiased_cka(x, y)
            assert result.matrix.loc[a, b] == pytest.approx(expected, rel=rtol, abs=1e-12)
    off = ~np.eye(len(models), dtype=bool)
    assert (result.matrix.to_numpy()[off] != biased.matrix.to_numpy()[off]).all()


def test_debiased_cka_of_unrelated_features_is_near_zero():
    """The biased CKA of independent noise is ~p q / n-sized; the debiased one centres on 0."""
    rng = np.random.default_rng(12)
    data = {"x": rng.normal(size=(400, 30)), "y": rng.normal(size=(400, 40))}
    split = Split(train_idx=np.arange(10), test_idx=np.arange(10, 400))
    biased = reconstruction_matrix(data, "cka", split=split, client="sync", progress=False)
    debiased = reconstruction_matrix(
        data, "cka", split=split, debiased=True, client="sync", progress=False
    )
    assert biased.matrix.loc["x", "y"] > 0.05
    assert abs(debiased.matrix.loc["x", "y"]) < 0.02


def test_debiased_cka_of_huge_features_is_that_of_the_features_scaled_down():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(300, 5))
    y = x @ rng.normal(size=(5, 3)) + rng.normal(size=(300, 3))
    huge = {"x": np.ldexp(x, 900), "y": np.ldexp(y, -900)}
    plain = {"x": x, "y": y}
    found = [
        reconstruction_matrix(d, "cka", debiased=True, client="sync", progress=False).matrix
        for d in (huge, plain)
    ]
    assert found[0].loc["x", "y"] == pytest.approx(found[1].loc["x", "y"], rel=1e-12)


def test_debiased_is_refused_for_other_metrics(models):
    from fredask.compare.matrix import ComparisonError

    with pytest.raises(ComparisonError, match="debiased is an option of metric='cka' only"):
        reconstruction_matrix(models, "cca", debiased=True, client="sync", progress=False)
