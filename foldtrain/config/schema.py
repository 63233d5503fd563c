"""Every config key, its default, its meaning and its allowed values, declared once.

Each key is a dataclass field made by `key()`: the default, a one-line doc, and a `Domain` that checks the value
when the config is parsed (before torch is imported), so a bad value fails at once with the key, the value and the
range in one line. Components take their allowed names from here (`LOSSES`, `SCHEDULERS`, ...), never from a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("auto", "mask", "csv", "imagefolder")
NORMALIZATIONS = ("model", "imagenet", "dataset")
HEADS = ("auto", "single", "multi")
SCHEDULERS = ("cosine", "cosine_restarts", "onecycle", "step", "none")
LOSSES = ("ce", "focal", "f1", "ce+f1")
CLASS_WEIGHTS = ("none", "balanced")
CHECKPOINTS = ("best", "last", "honest")
CUTMIX_MODES = ("box", "band")
AUTO_AUGMENT_PREFIXES = ("rand", "augmix", "original", "v0")
PARALLEL = ("ddp", "folds")
TTA = ("none", "hflip", "vflip", "flips", "d4")
PSEUDO_SELECT = ("precision", "quantile")
MIN_IMAGE_SIDE = 8
# Upper bounds where a larger value is a typo, not a recipe: each would otherwise reach an allocation (a 100000 px
# side asks the image cache for terabytes) or a loop long before it could fail with a clear message.
MAX_IMAGE_SIDE = 4096
MAX_BATCH = 8192
MAX_WORKERS = 256
MAX_EPOCHS = 10000
MAX_FOLDS = 100


@dataclass(frozen=True)
class Domain:
    """Allowed values of one key: a check returning an error text (None when the value is fine)."""

    describe: str
    check: Callable[[Any], bool]

    def error(self, value: Any) -> str | None:
        if value is None:  # None is a type question, answered by the type hint
            return None
        return None if self.check(value) else f"must be {self.describe}"


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Domain:
    """A number in a range; open ends exclude the bound."""
    def inside(v: float) -> bool:
        above = low is None or (v > low if low_open else v >= low)
        below = high is None or (v < high if high_open else v <= high)
        return above and below

    left = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
    right = "" if high is None else f"{high:g}" + (")" if high_open else "]")
    if low is not None and high is not None:
        text = f"in {left}, {right}"
    elif low is not None:
        text = f"{'above' if low_open else 'at least'} {low:g}"
    else:
        text = f"{'below' if high_open else 'at most'} {high:g}"
    return Domain(text, inside)


def one_of(options: Sequence[str]) -> Domain:
    return Domain(f"one of {', '.join(options)}", lambda v: v in options)


def _image_size(value: Any) -> bool:
    sides = [value] if isinstance(value, int) else value
    return (len(sides) in (1, 2) if isinstance(value, int) else len(sides) == 2) and all(
        isinstance(s, int) and not isinstance(s, bool) and MIN_IMAGE_SIDE <= s <= MAX_IMAGE_SIDE for s in sides)


IMAGE_SIZE = Domain(f"an int or [height, width] of {MIN_IMAGE_SIDE} to {MAX_IMAGE_SIDE} px each", _image_size)
AGE_BINS = Domain("two increasing ages such as [30, 60]",
                  lambda v: len(v) == 2 and all(isinstance(a, int) and 0 <= a <= 200 for a in v) and v[0] < v[1])
MARGINS = Domain(f"four ints [left, top, right, bottom] in 0..{MAX_IMAGE_SIDE}",
                 lambda v: len(v) == 4 and all(isinstance(m, int) and 0 <= m <= MAX_IMAGE_SIDE for m in v))
AUTO_AUGMENT = Domain(f"a timm policy string starting with {', '.join(AUTO_AUGMENT_PREFIXES)} (e.g. rand-m9-mstd0.5)",
                      lambda v: v.startswith(AUTO_AUGMENT_PREFIXES))
FOLD_LIST = Domain("a non-empty list of distinct fold numbers",
                   lambda v: 0 < len(v) <= MAX_FOLDS and len(set(map(str, v))) == len(v)
                   and all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in v))
FOLDER_NAME = Domain("a folder name of at most 200 characters (no '/', not '.' or '..')",
                     lambda v: bool(v) and len(v.encode()) <= 200 and "/" not in v and "\\" not in v
                     and v not in (".", "..") and "\0" not in v)
NON_EMPTY = Domain("a non-empty string", lambda v: bool(v.strip()))
PROBABILITY = number(0, 1)
PROBABILITY_BELOW_ONE = number(0, 1, high_open=True)
POSITIVE = number(0, low_open=True)
AT_LEAST_0 = number(0)
AT_LEAST_1 = number(1)


def key(default: Any, doc: str, domain: Domain | None = None) -> Any:
    """A config key: its default (lists copied per instance), a one-line doc and its allowed values."""
    metadata = {"doc": doc, "domain": domain}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class DataConfig:
    root: str = key("data/demo", "data set root; the default demo set is generated on first use", NON_EMPTY)
    format: str = key("auto", "auto, mask, csv (path,label[,group]) or imagefolder", one_of(FORMATS))
    image_size: int | list[int] = key(96, "model input, an int or [height, width]", IMAGE_SIZE)
    face_crop: bool = key(False, "train and predict on MTCNN face crops (see the facecrop section)")
    cache_dir: str | None = key(None, "decoded image and face-crop caches (null: run.dir/.cache)")
    num_workers: int = key(-1, "loader workers per process (-1: none on CPU, cores per process - 1 on GPU)",
                           number(-1, MAX_WORKERS))
    age_bins: list[int] = key([30, 60], "age group cut points of the competition layout", AGE_BINS)
    label_fixes: str | None = key(None, "CSV id,fix (to_male, to_female, swap_incorrect_normal, age_group=0|1|2; "
                                            "several rows per id allowed)")
    normalize: str = key("model", "model (timm's mean/std), imagenet, or dataset (measured on each fold's training "
                         "images)", one_of(NORMALIZATIONS))
    follow_symlinks: bool = key(False, "accept image symlinks that point outside data.root")
    max_pixels: int = key(40_000_000, "largest width x height an image may have before it is decoded (training, "
                          "prediction, the served model, face crops)", number(10_000, 1_000_000_000))


@dataclass(frozen=True)
class FaceCropConfig:
    margins: list[int] = key([30, 60, 30, 30], "pixels added around the face box: left, top, right, bottom",
                             MARGINS)
    scale_margins: bool = key(False, "scale the margins by face width / 150 px")
    detect_size: int | None = key(256, "longer side of the copy MTCNN sees (null: full size)",
                                  number(32, MAX_IMAGE_SIDE))
    min_prob: float = key(0.9, "detections below this confidence count as misses", PROBABILITY)
    fallback_scale: float = key(1.2, "crop of a photo without a face: this times the mean face crop", number(1, 10))


@dataclass(frozen=True)
class ModelConfig:
    name: str = key("resnet10t", "any timm model name", NON_EMPTY)
    heads: str = key("auto", "single, multi (mask 3 + gender 2 + age 3) or auto (multi for the mask layout)",
                     one_of(HEADS))
    pretrained: bool = key(False, "load timm's hub weights (needs the hub)")
    pretrained_file: str | None = key(None, "load weights from a local safetensors file")
    drop_rate: float = key(0.0, "dropout before the classifier", PROBABILITY_BELOW_ONE)
    drop_path_rate: float = key(0.0, "stochastic depth", PROBABILITY_BELOW_ONE)
    freeze_backbone: bool = key(False, "train the classifier only")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = key(10, "epochs per fold", number(1, MAX_EPOCHS))
    batch_size: int = key(32, "images per process and step", number(1, MAX_BATCH))
    lr: float = key(0.003, "peak learning rate", number(0, 10, low_open=True))
    weight_decay: float = key(0.0001, "decoupled weight decay (not on norms and biases)", number(0, 10))
    optimizer: str = key("adamw", "any timm optimizer name (adamw, adam, radam, sgd, lamb, ...)", NON_EMPTY)
    scheduler: str = key("cosine", "cosine, cosine_restarts, onecycle, step or none", one_of(SCHEDULERS))
    warmup_epochs: int = key(1, "linear warm-up epochs", number(0, MAX_EPOCHS))
    t0: int = key(5, "restart period in epochs of cosine_restarts", number(1, MAX_EPOCHS))
    max_lr: float | None = key(None, "peak of onecycle (null: train.lr)", number(0, 10, low_open=True))
    grad_accum: int = key(1, "batches per optimizer update", number(1, MAX_BATCH))
    clip_grad: float | None = key(None, "max gradient norm (null: off)", POSITIVE)
    loss: str = key("ce", "ce, focal, f1 (soft macro F1) or ce+f1", one_of(LOSSES))
    label_smoothing: float = key(0.0, "label smoothing", PROBABILITY_BELOW_ONE)
    class_weights: str = key("balanced", "none, or balanced: n / (k * count) per class (per head for three heads)",
                             one_of(CLASS_WEIGHTS))
    early_stopping: int = key(0, "patience in epochs on validation macro F1 (0: off)", number(0, MAX_EPOCHS))
    checkpoint: str = key("last", "the weights each fold keeps: last, best (validation F1), or honest (the "
                          "other folds' median best epoch)", one_of(CHECKPOINTS))
    save_above: float | None = key(None, "also keep every epoch's weights at or above this validation F1",
                                   PROBABILITY)
    ema: float = key(0.0, "EMA decay of the weights (0: off, e.g. 0.999)", PROBABILITY_BELOW_ONE)
    compile: bool = key(False, "torch.compile the model")
    gradcam: int = key(0, "draw a Grad-CAM grid of this many of each fold's worst out-of-fold images (0: off)",
                       number(0, 1000))
    resume: bool = key(False, "continue an interrupted run in its folder")
    seed: int = key(42, "training seed (+ fold number)", AT_LEAST_0)


@dataclass(frozen=True)
class AugConfig:
    hflip: float = key(0.5, "horizontal flip probability", PROBABILITY)
    vflip: float = key(0.0, "vertical flip probability", PROBABILITY)
    scale_min: float = key(0.7, "smallest area share of the random resized crop", number(0, 1, low_open=True))
    color_jitter: float = key(0.0, "brightness, contrast and saturation jitter", PROBABILITY)
    auto_augment: str | None = key(None, "a timm policy: rand-m9-mstd0.5, augmix-m5, original", AUTO_AUGMENT)
    random_erasing: float = key(0.0, "random erasing probability", PROBABILITY)
    cutmix: float = key(0.0, "probability of CutMix for a batch", PROBABILITY)
    cutmix_mode: str = key("box", "box (timm) or band (full-width horizontal band)", one_of(CUTMIX_MODES))
    mixup: float = key(0.0, "probability of Mixup for a batch (cutmix + mixup <= 1)", PROBABILITY)


@dataclass(frozen=True)
class CVConfig:
    folds: int = key(5, "k", number(2, MAX_FOLDS))
    seed: int = key(42, "split seed", AT_LEAST_0)
    only: list[int] | None = key(None, "train only these folds, e.g. [0, 2]", FOLD_LIST)
    parallel: str = key("ddp", "ddp (processes train each fold together) or folds (one fold per process)",
                        one_of(PARALLEL))
    full_fit: bool = key(False, "after CV, train one model on all images")
    oof_tta: str = key("hflip", "TTA views of the kept epochs' out-of-fold scores that blending tunes on "
                       "(oof_tta.csv); match the --tta you predict with", one_of(TTA))


@dataclass(frozen=True)
class CIConfig:
    level: float = key(0.9, "coverage of every F1 interval (persons resampled, never rows)",
                       number(0.5, 1, high_open=True))
    resamples: int = key(1000, "bootstrap resamples of persons", number(100, 100000))
    test_persons: int | None = key(None, "persons of the hidden test set test_f1_pi predicts for (null: one fold's)",
                                   AT_LEAST_1)
    seed: int = key(0, "bootstrap seed", AT_LEAST_0)


@dataclass(frozen=True)
class RunConfig:
    dir: str = key("runs", "output root", NON_EMPTY)
    name: str | None = key(None, "this run's folder (null: cv-<timestamp>)", FOLDER_NAME)


@dataclass(frozen=True)
class MLflowConfig:
    experiment: str = key("foldtrain", "experiment name", NON_EMPTY)
    tracking_uri: str | None = key(None, "else MLFLOW_TRACKING_URI, else sqlite:///mlflow.db", NON_EMPTY)
    log_model: bool = key(True, "log the fold ensemble as one MLflow model (pyfunc) at the end of the run")
    registered_model: str | None = key(None, "register the logged model under this name (a new version per run)",
                                       NON_EMPTY)
    model_tta: str = key("hflip", "TTA views of the logged model: none, hflip, vflip, flips, d4", one_of(TTA))
    system_metrics: bool = key(False, "log CPU, memory, disk, network and GPU use (a node id per machine)")
    model_max_rows: int = key(256, "rows the served model takes per request (a larger frame is refused)",
                              number(1, 100_000))


@dataclass(frozen=True)
class DistillConfig:
    teacher: str | None = key(None, "a finished run folder to distil: fold k's student learns from the teacher's fold "
                              "k model on its own batches (null: no distillation)", NON_EMPTY)
    temperature: float = key(2.0, "softmax temperature of the teacher's and student's scores in the KL term",
                             number(0.05, 100))
    alpha: float = key(0.5, "weight of the hard-label loss; the KL term to the teacher gets 1 - alpha", PROBABILITY)
    tta: str = key("hflip", "the teacher's TTA views on each training batch", one_of(TTA))
    data: str | None = key(None, "unlabeled images every student fit also learns from, on the teacher's scores alone "
                           "(an eval folder or any image folder; e.g. data.root/eval)", NON_EMPTY)
    final: bool = key(False, "after CV, train the deployable student on all images, taught by every teacher fold "
                      "(full/; its expected score is the k-fold students' oof_f1)")


@dataclass(frozen=True)
class PseudoConfig:
    teacher: str | None = key(None, "a finished run folder whose fold k labels the unlabeled pool for this run's fold "
                              "k (null: no pseudo-labels)", NON_EMPTY)
    data: str | None = key(None, "the unlabeled images: an eval folder (info.csv + images/) or any image folder "
                           "(null: data.root/eval)", NON_EMPTY)
    select: str = key("precision", "which hard labels to keep, per predicted class (of each head for three heads): "
                      "precision (those the teacher's out-of-fold rows say are right at pseudo.precision) or "
                      "quantile (a fixed share, pseudo.quantile)", one_of(PSEUDO_SELECT))
    precision: float = key(0.95, "select=precision: keep a class's labels down to the confidence at which the "
                           "teacher's out-of-fold rows of that class (other folds' only) were right this often",
                           number(0, 1, low_open=True, high_open=True))
    quantile: float = key(0.5, "select=quantile: per predicted class, drop about this share of the pool, the least "
                          "confident of that class (0 keeps all)", number(0, 1, high_open=True))
    soft: bool = key(False, "train on the teacher's probabilities for every pool image instead of kept hard labels")
    temperature: float = key(1.0, "soft targets: the teacher's probabilities to the power 1/temperature, "
                             "renormalised (below 1 sharpens)", number(0.05, 10))
    weight: float = key(1.0, "each pool row's weight in the loss against a labelled row's 1", number(0, 10,
                                                                                                 low_open=True))
    tta: str = key("hflip", "the teacher's TTA views when it labels the pool", one_of(TTA))
    warm_start: bool = key(True, "start fold k from the teacher's fold k weights (same model.name and heads; "
                           "benchmarks/README.md: +0.06-0.09 eval F1 over starting from scratch)")
    naive: bool = key(False, "label every fold's pool with the whole teacher ensemble, the usual leaky way, to "
                      "measure the leak (the run's oof_f1 is marked optimistic)")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    facecrop: FaceCropConfig = field(default_factory=FaceCropConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    ci: CIConfig = field(default_factory=CIConfig)
    run: RunConfig = field(default_factory=RunConfig)
    mlflow: MLflowConfig = field(default_factory=MLflowConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
