import numpy as np
import pandas as pd
import pytest

from foldtrain.data.folds import FoldError, assign_folds, check_folds


def person_table(n_persons: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_persons):
        base = rng.integers(0, 6)  # gender x age group of the person
        for mask in (0, 0, 0, 0, 0, 1, 2):
            rows.append({"person": f"p{p}", "label": mask * 6 + base})
    return pd.DataFrame(rows)


def test_no_person_in_two_folds_and_stratified():
    frame = person_table()
    folds = assign_folds(frame, k=5, seed=3)
    assert folds.between(0, 4).all()
    assert (frame.assign(fold=folds).groupby("person")["fold"].nunique() == 1).all()
    # Stratification: each fold's share of each mask state stays close to the overall share.
    shares = pd.crosstab(folds, frame["label"] // 6, normalize="index")
    overall = (frame["label"] // 6).value_counts(normalize=True).sort_index()
    assert (shares - overall).abs().to_numpy().max() < 0.05
    sizes = folds.value_counts()
    assert sizes.max() - sizes.min() <= 14  # two persons


def test_seed_changes_and_fixes_the_split():
    frame = person_table()
    assert assign_folds(frame, 5, 1).equals(assign_folds(frame, 5, 1))
    assert not assign_folds(frame, 5, 1).equals(assign_folds(frame, 5, 2))


def test_person_split_across_folds_is_caught():
    frame = pd.DataFrame({"person": ["a", "a", "b", "b"], "label": [0, 0, 0, 0]})
    with pytest.raises(FoldError, match="two folds"):
        check_folds(frame, pd.Series([0, 1, 0, 1]), 2)


def test_class_too_small_for_k_folds_warns_with_a_clear_message():
    frame = person_table(30)
    frame.loc[frame["person"] == "p0", "label"] = 99  # one person alone in a class
    folds = assign_folds(frame, 5, 0)
    warnings = check_folds(frame, folds, 5)
    assert any("class 99" in w and "too few for 5 folds" in w for w in warnings)


def test_fewer_persons_than_folds():
    with pytest.raises(FoldError, match="persons cannot fill"):
        assign_folds(person_table(3), 5, 0)


def test_unbalanced_split_is_caught():
    frame = person_table(50)
    folds = assign_folds(frame, 5, 0)
    skewed = folds.copy()
    common = frame["label"].value_counts().index[0]
    persons = frame.loc[frame["label"] == common, "person"].unique()
    skewed[frame["person"].isin(persons)] = 0  # every person of the commonest class in fold 0
    with pytest.raises(FoldError, match=f"class {common}"):
        check_folds(frame, skewed, 5)
