"""Resume state as safetensors + JSON: every kind of state round-trips, and nothing planted is ever executed."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from foldtrain.data.mixing import BatchMixer
from foldtrain.model.factory import build_model
from foldtrain.train.optim import build_optimizer, build_scheduler
from foldtrain.train.state import StateError, read_state, restore_rng, rng_state, write_state


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("scheduler", ["cosine", "cosine_restarts", "onecycle", "step"])
def test_model_optimizer_schedule_and_mixer_round_trip(tmp_path: Path, scheduler: str):
    model = build_model("resnet10t", 3)
    optimizer = build_optimizer(model, "adamw", lr=0.01, weight_decay=0.01)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    schedule = build_scheduler(optimizer, scheduler, epochs=4, updates_per_epoch=3, lr=0.01, max_lr=0.02)
    schedule.step_update(2)
    mixer = BatchMixer(0.5, 0.5, "band", 3, seed=1)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
             "mixer": mixer.state_dict(), "progress": {"epoch": 2, "history": [{"val_f1": None}]}}
    write_state(tmp_path, "state", state)
    loaded = read_state(tmp_path, "state")
    assert same(state, loaded)
    fresh = build_optimizer(build_model("resnet10t", 3), "adamw", lr=0.01, weight_decay=0.01)
    fresh.load_state_dict(loaded["optimizer"])  # torch accepts what came back


def test_random_state_round_trips(tmp_path: Path):
    generator = torch.Generator().manual_seed(3)
    write_state(tmp_path, "rng_0", rng_state({"loader": generator}))
    expected = (random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=generator))
    restore_rng(read_state(tmp_path, "rng_0"), {"loader": generator})
    assert (random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=generator)) == expected


class Planted:
    """A pickle that would create a marker file when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.parametrize("name", ["state.json", "state.safetensors", "rng_0.json", "rng_0.safetensors"])
def test_a_planted_pickle_is_refused_and_never_runs(tmp_path: Path, name: str):
    folder = tmp_path / "state"
    write_state(folder, "state", {"progress": {"epoch": 1}, "model": {"w": torch.ones(2)}})
    write_state(folder, "rng_0", rng_state())
    marker = tmp_path / "marker"
    (folder / name).write_bytes(pickle.dumps(Planted(marker)))
    with pytest.raises(StateError, match=name.replace(".", r"\.")):
        read_state(folder, name.split(".")[0])
    assert not marker.exists()


def test_json_that_names_missing_tensors_is_refused(tmp_path: Path):
    write_state(tmp_path, "state", {"w": torch.ones(2)})
    (tmp_path / "state.json").write_text('{"w": {"__tensor__": "t99"}}')
    with pytest.raises(StateError, match="does not match"):
        read_state(tmp_path, "state")
