"""Each fold's out-of-fold scores at its kept epoch with the TTA views prediction uses (`cv.oof_tta`).

Validation scores every epoch on one view, which is what the epoch rules need. A blend's weights and class biases,
though, act on the scores a submission is made of: a fold model's log-probabilities averaged over TTA views. Tuned
on single-view scores, a bias in nats means something else on averaged views. So once the kept epochs are known,
each fold model scores its own validation rows again through the prediction path (`FoldEnsemble`, same cache,
same transform, same views), and `ensemble.blend` tunes on those.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from foldtrain.data.loaders import CachedImageDataset, build_loader
from foldtrain.data.transforms import build_eval_transform
from foldtrain.model.fold_ensemble import FoldEnsemble, FoldModel
from foldtrain.model.weights import read_metadata
from foldtrain.run.folder import OOF_VIEWS
from foldtrain.train.checkpoint import read_result
from foldtrain.train.session import Session

log = logging.getLogger("foldtrain")



def read_oof_views(fold_dir: Path) -> dict | None:
    """`{rows, scores, tta, epoch}` of a fold's kept-epoch TTA scores, or None when it has none."""
    path = fold_dir / OOF_VIEWS
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as saved:
        return {"rows": saved["rows"], "scores": saved["scores"], "tta": str(saved["tta"]),
                "epoch": int(saved["epoch"])}


def score_oof_views(session: Session, folds: list[int]) -> None:
    """Write `fold<k>/oof_views.npz` for each fold whose kept epoch lacks it (main process; `cv.oof_tta=none`:
    nothing, the single-view validation scores already are the prediction path's)."""
    from foldtrain.files import atomic_path

    tta, data = session.cfg.cv.oof_tta, session.data
    if tta == "none":
        return
    for fold in folds:
        fold_dir = session.folder.fold(fold)
        kept = read_result(fold_dir)["checkpoint_epoch"]
        saved = read_oof_views(fold_dir)
        if saved is not None and saved["tta"] == tta and saved["epoch"] == kept:
            continue
        weights = session.folder.weights(fold)
        model = FoldModel(f"fold {fold}", weights, read_metadata(weights, f"fold {fold} weights"))
        _, rows = data.rows_of(fold)
        dataset = CachedImageDataset(data.cache_path, rows, None, build_eval_transform(data.size_hw))
        loader = build_loader(dataset, session.cfg.train.batch_size, False, 0, False)
        scores = FoldEnsemble([model], tta, session.accelerator.device).predict(loader, f"fold {fold} oof")
        with atomic_path(fold_dir / OOF_VIEWS, suffix=".npz") as tmp:
            np.savez(tmp, rows=rows, scores=scores.astype(np.float32), tta=np.array(tta), epoch=np.array(kept))
    log.info("out-of-fold scores with TTA %s at the kept epochs: folds %s", tta, folds)
