"""Serving speed on 2 CPU cores: one photo per request through each way foldtrain serves a model, and whole-process
prediction of a few thousand photos.

    python benchmarks/bench_serve.py [--persons 40] [--eval-images 3000] [--requests 200] [--rounds 2]
                                     [--out /tmp/bench_serve]

Setup (speed does not depend on how well the weights are trained, so one epoch each): a 5-fold resnet10t teacher
at 96 px with its logged MLflow pyfunc, and a student distilled from it with `distill.final=true`; the teacher
ensemble (hflip TTA inside the graph: 10 passes) and the final student (no TTA: 1 pass) exported with
`ensemble.export`.

Per request, one eval photo as JPEG bytes, latency from bytes to class probabilities:
- torch ensemble in-process: decode + resize as `ensemble.predict` does (`input_view`), `FoldEnsemble` with hflip;
- pyfunc served: `mlflow models serve` of the teacher's logged model (one uvicorn worker), JSON with the base64
  photo, from 1 client and from 8 concurrent clients;
- onnxruntime in-process: the same decode and resize, then the exported teacher ensemble, or the exported student.
p50 and p95 in ms and photos/s (requests / wall time; for 8 clients, all their requests over the wall time).

Whole process (`--rounds` interleaved): `python -m ensemble.predict` of the teacher ensemble (hflip) against
`ensemble.predict --onnx` of the exported student, and `--run STUDENT --full-only --tta none` (torch, one pass), on
all eval photos, start-up included.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import common  # noqa: E402

PRESET = REPO / "launch" / "accelerate" / "cpu_bf16.yaml"


def setup(work: Path, persons: int, eval_images: int) -> dict:
    from foldtrain.demo import generate_demo

    root = generate_demo(work / "data", persons=persons, seed=0, style="varied", eval_images=eval_images)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    base = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(PRESET),
            str(REPO / "foldtrain" / "main.py"), "-q", f"data.root={root}", "train.epochs=1",
            f"mlflow.tracking_uri={uri}"]
    teacher, student = work / "runs" / "teacher", work / "runs" / "student"
    if not (teacher / "summary.json").exists():
        common.run_checked([*base, "run.name=teacher"], work)
    if not (student / "summary.json").exists():
        common.run_checked([*base, "run.name=student", f"distill.teacher={teacher}", "distill.final=true",
                            "cv.only=[0]", "mlflow.log_model=false"], work)
    files = {"teacher_onnx": work / "teacher.onnx", "student_onnx": work / "student.onnx"}
    for key, run, extra in (("teacher_onnx", teacher, ["--tta", "hflip"]),
                            ("student_onnx", student, ["--fold", "full", "--tta", "none"])):
        if not files[key].exists():
            common.run_checked([sys.executable, "-m", "ensemble.export", "--run", str(run), "--out", str(files[key]),
                                *extra], work)
    summary = json.loads((teacher / "summary.json").read_text())
    return {"root": root, "uri": uri, "teacher": teacher, "student": student, "model_uri": summary["model_uri"],
            **files}


def percentiles(latencies: list[float], wall: float) -> dict:
    ms = np.asarray(latencies) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "photos_per_s": round(len(latencies) / wall, 1)}


def in_process(photos: list[bytes], predict) -> dict:
    predict(photos[0])  # warm-up: first-call allocations and lazy inits are not a request's cost
    latencies = []
    start = time.perf_counter()
    for photo in photos:
        t = time.perf_counter()
        predict(photo)
        latencies.append(time.perf_counter() - t)
    return percentiles(latencies, time.perf_counter() - start)


def torch_ensemble(run: Path):
    import torch

    from foldtrain.data.eval_set import input_view
    from foldtrain.model.fold_ensemble import FoldEnsemble, run_fold_models
    from foldtrain.run.folder import RunFolder

    ensemble = FoldEnsemble(run_fold_models(RunFolder(run)), "hflip", torch.device("cpu"))
    return lambda photo: torch.softmax(ensemble(input_view(photo, ensemble.size_hw)[None]), dim=1)


def onnx_model(path: Path):
    from ensemble.export import read_export_metadata, session
    from foldtrain.data.eval_set import input_view

    runner, size = session(path), tuple(read_export_metadata(path)["image_size"])
    return lambda photo: runner.run(["probs"], {"images": input_view(photo, size)[None].numpy()})[0]


def served(setup_facts: dict, photos: list[bytes], clients: list[int], work: Path) -> dict:
    port = common_free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=setup_facts["uri"],
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", setup_facts["model_uri"],
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"], cwd=work,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    bodies = [json.dumps({"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(p).decode()]]}}).encode()
              for p in photos]

    def ask(body: bytes) -> float:
        t = time.perf_counter()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            json.loads(response.read())
        return time.perf_counter() - t

    try:
        deadline = time.time() + 300
        while True:
            try:
                ask(bodies[0])
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit("mlflow models serve did not come up") from None
                time.sleep(1)
        out = {}
        for n in clients:
            start = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                latencies = list(pool.map(ask, bodies))
            out[n] = percentiles(latencies, time.perf_counter() - start)
        return out
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def common_free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def whole_process(facts: dict, work: Path, rounds: int) -> dict[str, list[float]]:
    eval_dir = str(facts["root"] / "eval")
    commands = {
        "teacher ensemble, torch (ensemble.predict --run, hflip)":
            ["--run", str(facts["teacher"]), "--tta", "hflip"],
        "final student, torch (ensemble.predict --full-only --tta none)":
            ["--run", str(facts["student"]), "--full-only", "--tta", "none"],
        "final student, onnxruntime (ensemble.predict --onnx)": ["--onnx", str(facts["student_onnx"])],
    }
    variants = {name: (lambda args=args: common.timed(lambda: common.run_checked(
        [sys.executable, "-m", "ensemble.predict", *args, "--data", eval_dir, "--out", str(work / "sub.csv")],
        work))) for name, args in commands.items()}
    common.run_checked([sys.executable, "-m", "ensemble.predict", "--run", str(facts["teacher"]), "--data", eval_dir,
                        "--out", str(work / "sub.csv")], work)  # builds the eval cache once, outside the timing
    return common.interleaved(variants, rounds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=40)
    parser.add_argument("--eval-images", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_serve"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    facts = setup(args.out, args.persons, args.eval_images)
    eval_images = sorted((facts["root"] / "eval" / "images").glob("[!.]*"))
    photos = [p.read_bytes() for p in eval_images[:args.requests]]
    rows = []
    for name, predict in (("torch ensemble in-process (5 folds x hflip)", torch_ensemble(facts["teacher"])),
                          ("onnxruntime, exported ensemble (5 folds x hflip)", onnx_model(facts["teacher_onnx"])),
                          ("onnxruntime, exported final student (1 pass)", onnx_model(facts["student_onnx"]))):
        rows.append({"way": name, "clients": 1, **in_process(photos, predict)})
        print(json.dumps(rows[-1]), flush=True)
    for clients, figures in served(facts, photos, [1, 8], args.out).items():
        rows.append({"way": "pyfunc via mlflow models serve (5 folds x hflip)", "clients": clients, **figures})
        print(json.dumps(rows[-1]), flush=True)
    print()
    print(common.markdown_table(list(rows[0]), [list(r.values()) for r in rows]))
    times = whole_process(facts, args.out, args.rounds)
    teacher = common.median(next(iter(times.values())))
    print(f"\nwhole process, {len(eval_images)} eval photos, median of {args.rounds} rounds:")
    for name, values in times.items():
        print(f"  {name}: {common.median(values):.1f} s ({common.spread(values)}), "
              f"{teacher / common.median(values):.2f}x the teacher ensemble")
    (args.out / "results.json").write_text(json.dumps({"requests": rows, "whole_process": times}, indent=1))
    print(common.machine())


if __name__ == "__main__":
    main()
