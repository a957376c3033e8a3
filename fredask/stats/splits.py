"""Train/test splits and the per-row labels that drive the one-pass engine.

Every row of the data gets one label, :data:`FOLD1`, :data:`FOLD2`, :data:`TEST`
or :data:`UNUSED` (docs/method.md, section 6).  The labels reproduce scikit-matter exactly:
the default 50/50 split of ``check_global_reconstruction_measures_input`` and
the two folds of ``Ridge2FoldCV`` (``KFold(2, shuffle, random_state)`` over the
train rows in the order they are given).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fredask.errors import FredaskError

#: Row labels, as stored in the ``int8`` label array.
FOLD1, FOLD2, TEST, UNUSED = 0, 1, 2, 3
#: The labels that carry statistics (UNUSED rows are skipped).
N_SUBSETS = 3
SKMATTER_SEED = 0x5F3759DF


class SplitError(FredaskError, ValueError):
    """A train/test split that cannot be used (bad sizes, repeats, overlap)."""


class SplitIndexError(SplitError, IndexError):
    """Split rows outside the data."""


class SplitTypeError(SplitError, TypeError):
    """Split rows that are not integer indices."""


@dataclass(frozen=True)
class Split:
    """The train and test rows of one comparison.

    Attributes
    ----------
    train_idx, test_idx : numpy.ndarray of int64
        Row indices, in the order that defines the folds (train) and the order
        of pointwise outputs (test).
    """

    train_idx: np.ndarray
    test_idx: np.ndarray

    def to_dict(self) -> dict[str, list[int]]:
        """Plain lists, for JSON persistence next to the results."""
        return {"train_idx": self.train_idx.tolist(), "test_idx": self.test_idx.tolist()}


def random_state_from(seed: int | np.random.RandomState | None) -> np.random.RandomState:
    """The RandomState that scikit-learn's ``check_random_state`` would return."""
    if seed is None:
        return np.random.mtrand._rand
    if isinstance(seed, np.random.RandomState):
        return seed
    return np.random.RandomState(seed)


def _as_index_array(name: str, idx, n_rows: int) -> np.ndarray:
    arr = np.asarray(idx)
    if arr.dtype == bool:
        if arr.shape != (n_rows,):
            raise SplitError(f"{name} is a boolean mask of shape {arr.shape}, expected ({n_rows},)")
        arr = np.flatnonzero(arr)
    if arr.ndim != 1:
        raise SplitError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise SplitError(f"{name} is empty")
    if not np.issubdtype(arr.dtype, np.integer):
        raise SplitTypeError(f"{name} must hold integer row indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = np.flatnonzero((arr < -n_rows) | (arr >= n_rows))
    if bad.size:
        raise SplitIndexError(
            f"{name} holds {bad.size} indices outside [0, {n_rows}), "
            f"first at position {bad[0]}: {arr[bad[0]]}"
        )
    arr = np.where(arr < 0, arr + n_rows, arr)
    uniq, counts = np.unique(arr, return_counts=True)
    if uniq.size != arr.size:
        raise SplitError(
            f"{name} repeats rows (first repeated row: {uniq[counts > 1][0]}); "
            "each row may be used once"
        )
    return arr


def resolve_split(n_rows: int, train_idx=None, test_idx=None, allow_overlap: bool = False) -> Split:
    """Train and test rows as scikit-matter chooses them.

    With neither given, a seeded 50/50 permutation split (test gets
    ``ceil(n/2)`` rows); with one given, the other is its sorted complement.

    Parameters
    ----------
    n_rows : int
        Number of rows of the data.
    train_idx, test_idx : array-like of int or bool, optional
        Row indices (negative indices count from the end) or boolean masks.
    allow_overlap : bool
        Let test rows also be train rows (only the local measures support
        it; the reference example of docs/method.md, section 8, tests on all rows).

    Returns
    -------
    Split
    """
    if n_rows < 2:
        raise SplitError(f"need at least 2 rows, got {n_rows}")
    if train_idx is None and test_idx is None:
        perm = np.random.RandomState(SKMATTER_SEED).permutation(n_rows)
        n_test = -(-n_rows // 2)
        return Split(
            train_idx=perm[n_test:].astype(np.int64), test_idx=perm[:n_test].astype(np.int64)
        )
    if test_idx is not None:
        test = _as_index_array("test_idx", test_idx, n_rows)
    if train_idx is not None:
        train = _as_index_array("train_idx", train_idx, n_rows)
    if train_idx is None:
        train = np.setdiff1d(np.arange(n_rows), test)
    elif test_idx is None:
        test = np.setdiff1d(np.arange(n_rows), train)
    overlap = np.intersect1d(train, test)
    if overlap.size and not allow_overlap:
        raise SplitError(
            f"train_idx and test_idx overlap in {overlap.size} rows (first: {overlap[0]}); "
            "test rows must not be train rows"
        )
    if train.size < 2:
        raise SplitError(f"need at least 2 train rows for two folds, got {train.size}")
    if test.size == 0:
        raise SplitError("no test rows are left")
    return Split(train_idx=train, test_idx=test)


def check_split(split: Split, n_rows: int, allow_overlap: bool = False) -> Split:
    """Check a given split against the data: rows in range, no repeats, no overlap.

    Parameters
    ----------
    split : Split
    n_rows : int
        Number of rows of the data.
    allow_overlap : bool
        Let test rows also be train rows (the local measures only).

    Returns
    -------
    Split
        ``split`` itself when it passes.

    Raises
    ------
    SplitError
        Naming the list (``train_idx`` / ``test_idx``) and the first bad row.
    """
    if not isinstance(split, Split):
        raise SplitTypeError(f"split must be a fredask.Split, got {type(split).__name__}")
    checked = resolve_split(
        n_rows, train_idx=split.train_idx, test_idx=split.test_idx, allow_overlap=allow_overlap
    )
    if np.any(checked.train_idx != split.train_idx) or np.any(checked.test_idx != split.test_idx):
        raise SplitIndexError("split rows must be given as non-negative row indices")
    return split


def stratified_split(groups, n_test: int = 1000, seed: int = 0) -> Split:
    """The paper's split: a fixed number of test rows, stratified by group.

    Parameters
    ----------
    groups : array-like of str or int, shape (n_rows,)
        Group label of each row (the structure's subset name, repeated for its
        atoms).  Classes are numbered by sorted label, so the split depends
        only on the labels and the seed.
    n_test : int, default=1000
        Number of test rows.
    seed : int, default=0
        Seed of the shuffle.

    Returns
    -------
    Split
        Train rows in the shuffled order that defines the folds; persist it
        (:meth:`Split.to_dict`) with the results.
    """
    from sklearn.model_selection import train_test_split

    groups = np.asarray(groups)
    n_rows = groups.shape[0]
    if not 0 < n_test < n_rows:
        raise SplitError(f"n_test must lie in (0, {n_rows}), got {n_test}")
    _, codes = np.unique(groups, return_inverse=True)
    try:
        train, test = train_test_split(
            np.arange(n_rows), test_size=n_test, random_state=seed, stratify=codes
        )
    except ValueError as error:  # too few rows of a subset, or a test set smaller than the classes
        raise SplitError(f"the paper's split of {n_test} test rows: {error}") from None
    return Split(train_idx=train.astype(np.int64), test_idx=test.astype(np.int64))


def split_usable(
    usable: np.ndarray, groups=None, kind: str = "default", n_test: int = 1000, seed: int = 0
) -> Split:
    """A split of the ``usable`` rows only (atoms or structures), as indices of all rows.

    Parameters
    ----------
    usable : numpy.ndarray of int
        The rows that may be used (e.g. not skipped by any model).
    groups : array-like, shape (n_rows,), optional
        Subset label of every row; needed by ``kind="paper"``.
    kind : {"default", "paper"}
        scikit-matter's 50/50 split, or :func:`stratified_split` with
        ``n_test`` and ``seed``.
    """
    if kind == "paper":
        if groups is None:
            raise SplitError("the paper's split needs subset labels (it stratifies by subset)")
        local = stratified_split(np.asarray(groups)[usable], n_test=n_test, seed=seed)
    elif kind == "default":
        local = resolve_split(usable.size)
    else:
        raise SplitError(f"kind must be 'default' or 'paper', got {kind!r}")
    return Split(train_idx=usable[local.train_idx], test_idx=usable[local.test_idx])


def fold_positions(
    n_train: int, random_state=SKMATTER_SEED, shuffle: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into the train rows) of the two folds of ``Ridge2FoldCV``.

    ``KFold(n_splits=2)``: the first ``ceil(n/2)`` (shuffled) positions are
    fold 2, the rest fold 1, each sorted.  For ``n = 7`` with the default seed:
    fold 1 = [1, 3, 4], fold 2 = [0, 2, 5, 6].
    """
    if not shuffle and random_state is not None:
        raise SplitError(
            "Setting a random_state has no effect since shuffle is False. "
            "Leave random_state to None, or set shuffle=True."
        )
    order = np.arange(n_train)
    if shuffle:
        random_state_from(random_state).shuffle(order)
    n_fold2 = -(-n_train // 2)
    return np.sort(order[n_fold2:]), np.sort(order[:n_fold2])


def row_labels(
    n_rows: int, split: Split, random_state=SKMATTER_SEED, shuffle: bool = True
) -> np.ndarray:
    """The ``int8`` label of every row: FOLD1, FOLD2, TEST or UNUSED."""
    labels = np.full(n_rows, UNUSED, dtype=np.int8)
    labels[split.test_idx] = TEST
    fold1, fold2 = fold_positions(split.train_idx.size, random_state, shuffle)
    labels[split.train_idx[fold1]] = FOLD1
    labels[split.train_idx[fold2]] = FOLD2
    return labels
