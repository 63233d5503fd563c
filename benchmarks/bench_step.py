"""Per-step cost of foldtrain's Accelerate loop against a plain PyTorch loop on the same model and data.

    python benchmarks/bench_step.py [--rounds 6] [--steps 30] [--warmup 5] [--data DIR] [--precision]

Both loops train resnet10t (18 classes) on batches of 32 uint8 96x96 images held in memory (synthetic: the loop,
not the decoding, is measured; --data is accepted for a uniform command line and ignored), read through a
DataLoader with 0 workers, normalised by `DeviceNormalize`, with the same AdamW optimizer (torch's fused kernel,
as foldtrain builds it), so only the loop around the step differs.

- ours: `foldtrain.train.loop.train_one_epoch` on `Accelerator(cpu=True).prepare(...)`d objects, with the timm
  cosine schedule foldtrain steps every update (everything a real epoch does);
- plain: `loss = ce(model(x), y); loss.backward(); opt.step(); opt.zero_grad()`.

With `--precision`, foldtrain's loop runs against itself instead: fp32 against bf16 autocast on the CPU (the
autocast `accelerate launch --mixed_precision bf16` turns on: `torch.autocast("cpu", torch.bfloat16)` around
the step; the weights, optimizer and loss stay fp32).

A step's time is the gap between two batches leaving the loader, so data loading, the step and any per-step
bookkeeping are all inside it. After `--warmup` steps per loop, short epochs of the two loops alternate (`--steps`
measured steps per loop in all, over `--rounds` epochs each); the overhead is given on the medians of all steps and
as the median of per-round paired ratios, which cancels load that drifts between rounds.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bar in either loop (ours draws one on a terminal)

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import common  # noqa: E402
from foldtrain.cpus import keep_freed_memory  # noqa: E402
from foldtrain.data.mixing import BatchMixer  # noqa: E402
from foldtrain.data.transforms import DeviceNormalize  # noqa: E402
from foldtrain.model.factory import build_model, model_norm  # noqa: E402
from foldtrain.train.batch import BatchPrep  # noqa: E402
from foldtrain.train.loop import UpdateCounter, train_one_epoch  # noqa: E402
from foldtrain.train.optim import build_optimizer, build_scheduler  # noqa: E402

MODEL, CLASSES, BATCH, SIZE, LR, WD = "resnet10t", 18, 32, 96, 0.003, 1e-4


class StepClock:
    """Wraps a loader and records when each batch is handed out; gaps between handouts are step times."""

    def __init__(self, loader):
        self.loader = loader
        self.stamps: list[float] = []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.stamps.append(time.perf_counter())
            yield batch
        self.stamps.append(time.perf_counter())  # closes the last step

    def take_steps(self, warmup: int) -> list[float]:
        """Step durations of the epoch just finished, without the first `warmup`; resets for the next epoch."""
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]
        self.stamps = []
        return gaps[warmup:]


def synthetic_loader(steps: int, seed: int) -> DataLoader:
    """`steps` batches of random uint8 images and labels, as (image, label, row) like CachedImageDataset."""
    gen = torch.Generator().manual_seed(seed)
    count = steps * BATCH
    images = torch.randint(0, 256, (count, 3, SIZE, SIZE), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, CLASSES, (count,), generator=gen)
    return DataLoader(TensorDataset(images, labels, torch.arange(count)), batch_size=BATCH, shuffle=True,
                      drop_last=True, num_workers=0, generator=gen)


def fresh_model() -> tuple[torch.nn.Module, DeviceNormalize]:
    torch.manual_seed(0)
    model = build_model(MODEL, CLASSES).to(memory_format=torch.channels_last)
    return model, DeviceNormalize(*model_norm(model))


def ours_runner(steps: int):
    """An epoch function for foldtrain's loop, set up the way foldtrain/train/fit.py sets up a fold."""
    accelerator = Accelerator(cpu=True)
    model, normalize = fresh_model()
    optimizer = build_optimizer(model, "adamw", LR, WD)
    model, optimizer, loader = accelerator.prepare(model, optimizer, synthetic_loader(steps, 1))
    scheduler = build_scheduler(optimizer, "cosine", 1000, len(loader), 1, LR)  # long schedule: lr stays sane
    clock, counter, loss_fn = StepClock(loader), UpdateCounter(), torch.nn.CrossEntropyLoss()
    # The batch preparation FoldFit builds from the default aug.* keys: normalisation only (no erasing/mixing).
    batch_prep = BatchPrep(normalize, 0.0, BatchMixer(0.0, 0.0, "box", CLASSES), accelerator.device)

    def run_epoch() -> None:
        train_one_epoch(model, clock, optimizer, loss_fn, batch_prep, accelerator, counter,
                        on_update=scheduler.step_update)

    return run_epoch, clock


def bf16_runner(steps: int):
    """foldtrain's loop under the CPU autocast of Accelerate's bf16 mixed precision. One process holds one
    Accelerate state, so the autocast is entered here rather than through a second Accelerator."""
    run_epoch, clock = ours_runner(steps)

    def run_bf16_epoch() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            run_epoch()

    return run_bf16_epoch, clock


def plain_runner(steps: int):
    """An epoch function for the textbook loop."""
    model, normalize = fresh_model()
    # fused: the kernel foldtrain's build_optimizer picks, so the comparison is of the loop, not the optimizer.
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD, fused=True)
    clock, loss_fn = StepClock(synthetic_loader(steps, 1)), torch.nn.CrossEntropyLoss()

    def run_epoch() -> None:
        model.train()
        for images, labels, _ in clock:
            loss = loss_fn(model(normalize(images)), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return run_epoch, clock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="ignored: this benchmark uses synthetic in-memory images")
    parser.add_argument("--rounds", type=int, default=6, help="alternating epochs per loop")
    parser.add_argument("--steps", type=int, default=30, help="measured steps per loop, spread over the rounds")
    parser.add_argument("--warmup", type=int, default=5, help="steps dropped from the first epoch of each loop")
    parser.add_argument("--precision", action="store_true", help="fp32 against bf16 autocast, both foldtrain's loop")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as foldtrain's entry does; both loops share this process and the setting

    # Short epochs alternate often, so a burst of background load lands on both loops rather than on one epoch.
    per_epoch = max(1, -(-args.steps // args.rounds))
    if args.precision:
        runners = {"fp32": ours_runner(1 + per_epoch), "bf16": bf16_runner(1 + per_epoch)}
    else:
        runners = {"ours": ours_runner(1 + per_epoch), "plain": plain_runner(1 + per_epoch)}
    first, second = runners
    for run_epoch, clock in runners.values():  # warm-up epochs: first-call allocations, oneDNN kernel choice
        for _ in range(-(-args.warmup // (1 + per_epoch))):
            run_epoch()
            clock.take_steps(0)
    steps: dict[str, list[float]] = {name: [] for name in runners}
    ratios = []
    for r in range(args.rounds):
        round_median = {}
        for name, (run_epoch, clock) in runners.items():
            run_epoch()
            # The first gap of an epoch also holds the loader's iterator set-up: not a training step.
            taken = clock.take_steps(1)
            steps[name] += taken
            round_median[name] = common.median(taken)
            print(f"  round {r + 1}/{args.rounds} {name}: median step {round_median[name] * 1e3:.1f} ms", flush=True)
        ratios.append(round_median[first] / round_median[second])

    med = {name: common.median(values) for name, values in steps.items()}
    rows = [[name, len(steps[name]), f"{med[name] * 1e3:.1f}", common.spread([s * 1e3 for s in steps[name]]),
             f"{BATCH / med[name]:.0f}"] for name in runners]
    print()
    print(common.markdown_table(["loop", "steps", "median ms/step", "range (ms)", "images/s"], rows))
    overhead = (med[first] / med[second] - 1) * 100
    paired = (common.median(ratios) - 1) * 100
    print(f"\n{first} vs {second}: {overhead:+.1f}% on the step medians, {paired:+.1f}% as the median of "
          f"per-round paired ratios ({', '.join(f'{(x - 1) * 100:+.1f}%' for x in ratios)})"
          + ("" if args.precision else "; target within 5%"))
    if args.precision:
        print(f"bf16 speed-up: {med['fp32'] / med['bf16']:.2f}x on the step medians, "
              f"{common.median(ratios):.2f}x as the median of per-round paired ratios")
    print(f"{MODEL}, {CLASSES} classes, batch {BATCH} at {SIZE}x{SIZE}, AdamW, {args.rounds} alternating epochs of "
          f"{per_epoch} measured steps each after {args.warmup} warm-up steps")
    print(common.machine())


if __name__ == "__main__":
    main()
