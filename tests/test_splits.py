"""Splits and fold labels against scikit-matter / scikit-learn (docs/method.md, sections 2, 4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.model_selection import KFold
from skmatter.metrics._reconstruction_measures import check_global_reconstruction_measures_input
from skmatter.model_selection import train_test_split

from fredask.stats.splits import (
    FOLD1,
    FOLD2,
    TEST,
    UNUSED,
    Split,
    fold_positions,
    resolve_split,
    row_labels,
    stratified_split,
)

SKMATTER_SEED = 0x5F3759DF
SIZES = [2, 3, 7, 10, 81, 162, 1001, 1002]


def _kfold_first_split(n, random_state=SKMATTER_SEED, shuffle=True):
    """(fold 1, fold 2) of Ridge2FoldCV: KFold(2)'s first (train, test) split."""
    return next(KFold(2, shuffle=shuffle, random_state=random_state).split(np.arange(n)))


# --------------------------------------------------------------------------------------
# resolve_split
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_rows", SIZES)
def test_default_split_matches_skmatter(n_rows):
    train, test = train_test_split(
        np.arange(n_rows),
        test_size=0.5,
        train_size=0.5,
        random_state=SKMATTER_SEED,
        shuffle=True,
    )
    split = resolve_split(n_rows)
    np.testing.assert_array_equal(split.train_idx, train)
    np.testing.assert_array_equal(split.test_idx, test)
    assert split.test_idx.size == -(-n_rows // 2)
    assert split.train_idx.dtype == split.test_idx.dtype == np.int64


@pytest.mark.parametrize("n_rows", [9, 10])
def test_default_split_is_the_seeded_permutation(n_rows):
    """docs/method.md, section 2: first ceil(n/2) positions of the permutation are test."""
    permutation = np.random.RandomState(SKMATTER_SEED).permutation(n_rows)
    split = resolve_split(n_rows)
    n_test = (n_rows + 1) // 2
    np.testing.assert_array_equal(split.test_idx, permutation[:n_test])
    np.testing.assert_array_equal(split.train_idx, permutation[n_test:])


@pytest.mark.parametrize(
    "given",
    ["test_only", "train_only", "both"],
)
@pytest.mark.parametrize("n_rows", [11, 40])
def test_given_indices_match_skmatter(n_rows, given):
    rng = np.random.default_rng(n_rows)
    permutation = rng.permutation(n_rows)
    train_idx = permutation[: n_rows // 2] if given != "test_only" else None
    test_idx = permutation[n_rows // 2 : n_rows - 2] if given != "train_only" else None
    train, test, _, _ = check_global_reconstruction_measures_input(
        np.zeros((n_rows, 1)), np.zeros((n_rows, 1)), train_idx, test_idx, None, None
    )
    split = resolve_split(n_rows, train_idx=train_idx, test_idx=test_idx)
    # given indices keep their (unsorted) order, complements are sorted
    np.testing.assert_array_equal(split.train_idx, train)
    np.testing.assert_array_equal(split.test_idx, test)


def test_negative_indices_and_boolean_masks():
    n_rows = 12
    test_idx = np.array([11, 0, 5, 3])
    reference = resolve_split(n_rows, test_idx=test_idx)
    negative = resolve_split(n_rows, test_idx=test_idx - n_rows)
    mask = np.zeros(n_rows, dtype=bool)
    mask[test_idx] = True
    from_mask = resolve_split(n_rows, test_idx=mask)
    np.testing.assert_array_equal(negative.test_idx, reference.test_idx)
    np.testing.assert_array_equal(negative.train_idx, reference.train_idx)
    np.testing.assert_array_equal(from_mask.test_idx, np.sort(test_idx))
    np.testing.assert_array_equal(from_mask.train_idx, reference.train_idx)


def test_split_to_dict_round_trips_through_json():
    split = resolve_split(9)
    restored = json.loads(json.dumps(split.to_dict()))
    assert restored == {"train_idx": split.train_idx.tolist(), "test_idx": split.test_idx.tolist()}
    again = Split(np.asarray(restored["train_idx"]), np.asarray(restored["test_idx"]))
    np.testing.assert_array_equal(again.train_idx, split.train_idx)


# --------------------------------------------------------------------------------------
# folds and row labels
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_train", SIZES)
def test_fold_positions_match_kfold(n_train):
    fold1, fold2 = fold_positions(n_train)
    kfold_train, kfold_test = _kfold_first_split(n_train)
    np.testing.assert_array_equal(fold1, kfold_train)
    np.testing.assert_array_equal(fold2, kfold_test)
    assert fold2.size == -(-n_train // 2)
    np.testing.assert_array_equal(np.sort(np.r_[fold1, fold2]), np.arange(n_train))


def test_fold_positions_spec_example():
    fold1, fold2 = fold_positions(7)
    np.testing.assert_array_equal(fold1, [1, 3, 4])
    np.testing.assert_array_equal(fold2, [0, 2, 5, 6])


@pytest.mark.parametrize("random_state", [0, 1, 42, np.random.RandomState(5)])
def test_fold_positions_other_random_states(random_state):
    if isinstance(random_state, np.random.RandomState):
        ours_state, theirs_state = np.random.RandomState(5), np.random.RandomState(5)
    else:
        ours_state = theirs_state = random_state
    fold1, fold2 = fold_positions(33, ours_state)
    kfold_train, kfold_test = _kfold_first_split(33, theirs_state)
    np.testing.assert_array_equal(fold1, kfold_train)
    np.testing.assert_array_equal(fold2, kfold_test)


@pytest.mark.parametrize("n_train", [2, 7, 10, 81])
def test_fold_positions_without_shuffle(n_train):
    fold1, fold2 = fold_positions(n_train, random_state=None, shuffle=False)
    kfold_train, kfold_test = _kfold_first_split(n_train, random_state=None, shuffle=False)
    np.testing.assert_array_equal(fold1, kfold_train)
    np.testing.assert_array_equal(fold2, kfold_test)


def test_fold_positions_reject_random_state_without_shuffle():
    with pytest.raises(ValueError, match="shuffle is False"):
        KFold(2, shuffle=False, random_state=3)
    with pytest.raises(ValueError, match="shuffle is False"):
        fold_positions(10, random_state=3, shuffle=False)


@pytest.mark.parametrize(("random_state", "shuffle"), [(SKMATTER_SEED, True), (None, False)])
def test_row_labels(random_state, shuffle):
    n_rows = 23
    rng = np.random.default_rng(3)
    permutation = rng.permutation(n_rows)
    split = resolve_split(n_rows, train_idx=permutation[:13], test_idx=permutation[13:20])
    labels = row_labels(n_rows, split, random_state, shuffle)
    assert labels.dtype == np.int8
    kfold_train, kfold_test = _kfold_first_split(13, random_state, shuffle)
    expected = np.full(n_rows, UNUSED)
    expected[split.test_idx] = TEST
    # folds are positions in the order the train rows were given
    expected[split.train_idx[kfold_train]] = FOLD1
    expected[split.train_idx[kfold_test]] = FOLD2
    np.testing.assert_array_equal(labels, expected)
    assert np.sum(labels == UNUSED) == 3
    assert (FOLD1, FOLD2, TEST, UNUSED) == (0, 1, 2, 3)


# --------------------------------------------------------------------------------------
# stratified_split (the paper's split)
# --------------------------------------------------------------------------------------


def _groups(seed=0):
    rng = np.random.default_rng(seed)
    names = np.array(["mc3d", "bulk", "clusters", "surfaces", "molecules"])
    sizes = [400, 250, 150, 120, 80]
    groups = np.concatenate([np.full(size, name) for name, size in zip(names, sizes, strict=True)])
    return rng.permutation(groups)


def test_stratified_split_keeps_class_proportions():
    groups = _groups()
    split = stratified_split(groups, n_test=200, seed=0)
    assert split.test_idx.size == 200
    assert split.train_idx.size == groups.size - 200
    np.testing.assert_array_equal(
        np.sort(np.r_[split.train_idx, split.test_idx]), np.arange(groups.size)
    )
    for name in np.unique(groups):
        expected = 200 * np.mean(groups == name)
        assert abs(np.sum(groups[split.test_idx] == name) - expected) <= 1, name


def test_stratified_split_is_reproducible_and_seeded():
    groups = _groups()
    first, second = stratified_split(groups, 100, seed=0), stratified_split(groups, 100, seed=0)
    np.testing.assert_array_equal(first.test_idx, second.test_idx)
    np.testing.assert_array_equal(first.train_idx, second.train_idx)
    other = stratified_split(groups, 100, seed=1)
    assert not np.array_equal(np.sort(first.test_idx), np.sort(other.test_idx))


def test_stratified_split_depends_only_on_sorted_labels():
    groups = _groups()
    reference = stratified_split(groups, 150, seed=0)
    names = np.unique(groups)
    # any labels with the same sorted order give the same split: integer codes,
    # and names mapped monotonically to other names
    codes = np.searchsorted(names, groups)
    renamed = np.array([f"subset_{code:02d}" for code in codes])
    for relabelled in (codes, renamed, codes * 10 + 7):
        split = stratified_split(relabelled, 150, seed=0)
        np.testing.assert_array_equal(split.test_idx, reference.test_idx)
        np.testing.assert_array_equal(split.train_idx, reference.train_idx)


def test_stratified_split_matches_sklearn_on_sorted_codes():
    from sklearn.model_selection import train_test_split as sklearn_split

    groups = _groups(1)
    _, codes = np.unique(groups, return_inverse=True)
    train, test = sklearn_split(
        np.arange(groups.size), test_size=120, random_state=0, stratify=codes
    )
    split = stratified_split(groups, 120)
    np.testing.assert_array_equal(split.train_idx, train)
    np.testing.assert_array_equal(split.test_idx, test)


@pytest.mark.parametrize("n_test", [0, 1000, 1500])
def test_stratified_split_rejects_bad_test_size(n_test):
    with pytest.raises(ValueError, match="n_test"):
        stratified_split(_groups(), n_test)
