"""Face crops with the real MTCNN on a real face photo (skimage's astronaut) pasted into competition-sized canvases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data

from foldtrain.data.images import is_image_file
from foldtrain.facecrop import CropSettings, crop_cache_dir, crop_faces, ensure_face_crops, is_complete
from foldtrain.facecrop import crop as crop_module
from foldtrain.facecrop.geometry import fallback_box, grow_box
from foldtrain.facecrop.settings import JOURNAL_PREFIX, META_NAME, REPORT_NAME
from foldtrain.facecrop.tree import write_crops
from tests.conftest import REPO, cli_env, free_port, run_module

PERSON = "000001_female_Asian_30"
NO_FACE_PERSON = "000002_male_Asian_60"
KINDS = ["mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal"]
SUFFIXES = [".jpg", ".png", ".jpg", ".jpeg", ".png", ".jpg", ".png"]
# (pasted size, x, y) of the 512x512 astronaut: faces 50..87 px wide, left, right, top and bottom of the canvas.
PLACEMENTS = [(512, -150, 0), (512, -30, 200), (400, 0, 50), (320, 100, 150), (512, -100, 300), (300, 10, 10),
              (448, -60, 120)]
CANVAS = (384, 512)


def face_photo(size: int, x: int, y: int) -> Image.Image:
    """A 384x512 photo with the astronaut's face somewhere on a plain background."""
    canvas = Image.new("RGB", CANVAS, (120, 130, 140))
    canvas.paste(Image.fromarray(data.astronaut()).resize((size, size), Image.BILINEAR), (x, y))
    return canvas


def flat_photo(seed: int) -> Image.Image:
    """A 384x512 photo of flat colour blocks: nothing MTCNN could take for a face."""
    rng = np.random.default_rng(seed)
    array = np.empty((CANVAS[1], CANVAS[0], 3), dtype=np.uint8)
    array[:256], array[256:] = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    return Image.fromarray(array)


def write_person(folder: Path, photos: list[Image.Image]) -> None:
    folder.mkdir(parents=True)
    for kind, suffix, photo in zip(KINDS, SUFFIXES, photos, strict=True):
        photo.save(folder / f"{kind}{suffix}")
        (folder / f"._{kind}{suffix}").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory) -> Path:
    """The competition layout: one real-face person, one person without a face, two eval images, junk files."""
    root = tmp_path_factory.mktemp("facecrop") / "raw"
    images = root / "train" / "images"
    write_person(images / PERSON, [face_photo(*placement) for placement in PLACEMENTS])
    write_person(images / NO_FACE_PERSON, [flat_photo(seed) for seed in range(7)])
    (root / "train" / "train.csv").write_text(
        "id,gender,race,age,path\n000001,female,Asian,30,000001_female_Asian_30\n"
        "000002,male,Asian,60,000002_male_Asian_60\n")
    (root / "eval" / "images").mkdir(parents=True)
    face_photo(400, -20, 100).save(root / "eval" / "images" / "cbc5c6e168e63498590db46022617123f1fe1268.jpg")
    flat_photo(99).save(root / "eval" / "images" / "0001b62fb1057a1182db2c839de232dbef0d1e90.jpg")
    (root / "eval" / "info.csv").write_text(
        "ImageID,ans\ncbc5c6e168e63498590db46022617123f1fe1268.jpg,0\n0001b62fb1057a1182db2c839de232dbef0d1e90.jpg,0\n")
    return root


@pytest.fixture(scope="module")
def cropped(raw_root, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One CLI run over `raw_root`, shared by the tests that read its output."""
    dst = tmp_path_factory.mktemp("facecrop") / "faces"
    proc = run_module("foldtrain.facecrop", ["--src", str(raw_root), "--dst", str(dst)], cwd=REPO, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dst, proc


def relative_files(root: Path, images: bool) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and is_image_file(p) == images and not p.name.startswith("."))


def report(dst: Path) -> pd.DataFrame:
    return pd.read_csv(dst / REPORT_NAME).set_index("path")


def test_cli_crops_every_image_into_the_same_layout(raw_root, cropped):
    dst, proc = cropped
    sources = relative_files(raw_root, images=True)
    assert len(sources) == 16
    assert relative_files(dst, images=True) == sources
    for table in ("train/train.csv", "eval/info.csv"):
        assert (dst / table).read_bytes() == (raw_root / table).read_bytes()
    assert not list(dst.rglob("._*")), "hidden junk files must not be copied"
    assert not list(dst.rglob("*.tmp")), "no temporary file may be left behind"
    assert sorted(report(dst).index) == sources
    assert is_complete(dst)
    assert "mask1" in proc.stdout and "images/s" in proc.stdout


def test_face_crops_are_tight_and_hold_the_face(cropped):
    from facenet_pytorch import MTCNN

    dst, _ = cropped
    rows = report(dst)
    faces = [f"train/images/{PERSON}/{kind}{suffix}" for kind, suffix in zip(KINDS, SUFFIXES, strict=True)]
    detected = [path for path in faces if rows.loc[path, "detected"]]
    assert len(detected) >= 6, rows.loc[faces]
    mtcnn = MTCNN(keep_all=True, device="cpu")
    for path in detected:
        crop = Image.open(dst / path).convert("RGB")
        row = rows.loc[path]
        assert crop.size == (row.x2 - row.x1, row.y2 - row.y1)
        assert crop.width < 300 and crop.height < 400, (path, crop.size)
        boxes, probs = mtcnn.detect(crop)
        assert boxes is not None, f"no face found again in the crop of {path}"
        x1, y1, x2, y2 = boxes[int(np.argmax(probs))]
        assert (x2 - x1) * (y2 - y1) / (crop.width * crop.height) > 0.12, (path, boxes)


def test_images_without_a_face_get_the_flagged_fallback(cropped):
    dst, _ = cropped
    rows = report(dst)
    found = rows[rows["detected"]]
    width = (found.x2 - found.x1).mean() * 1.2
    height = (found.y2 - found.y1).mean() * 1.2
    misses = [f"train/images/{NO_FACE_PERSON}/{kind}{suffix}" for kind, suffix in zip(KINDS, SUFFIXES, strict=True)]
    misses.append("eval/images/0001b62fb1057a1182db2c839de232dbef0d1e90.jpg")
    for path in misses:
        row = rows.loc[path]
        assert not row.detected
        assert abs((row.x2 - row.x1) - min(width, CANVAS[0])) <= 1
        assert abs((row.y2 - row.y1) - min(height, CANVAS[1])) <= 1
        assert Image.open(dst / path).size == (row.x2 - row.x1, row.y2 - row.y1)


def test_second_run_skips_finished_crops(raw_root, cropped):
    dst, _ = cropped
    before = {p: p.stat().st_mtime_ns for p in dst.rglob("*") if p.is_file() and p.name != REPORT_NAME
              and p.name != META_NAME}
    proc = run_module("foldtrain.facecrop", ["--src", str(raw_root), "--dst", str(dst)], cwd=REPO, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 cropped now, 16 skipped" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_corrupt_image_is_named_and_the_others_are_still_cropped(tmp_path):
    src = tmp_path / "raw"
    (src / "images").mkdir(parents=True)
    face_photo(512, -100, 50).save(src / "images" / "normal.jpg")
    (src / "images" / "mask1.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    dst = tmp_path / "faces"
    proc = run_module("foldtrain.facecrop", ["--src", str(src), "--dst", str(dst)], cwd=REPO, timeout=240)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "mask1.jpg" in proc.stderr and "Replace or delete" in proc.stderr
    assert (dst / "images" / "normal.jpg").is_file() and not (dst / "images" / "mask1.jpg").exists()
    assert list(report(dst).index) == ["images/normal.jpg"]
    assert not is_complete(dst)


@pytest.mark.parametrize("dst_of", [lambda src: src, lambda src: src / "train", lambda src: src.parent])
def test_an_output_inside_the_source_or_around_it_is_refused(tmp_path, dst_of):
    src = tmp_path / "raw"
    (src / "train").mkdir(parents=True)
    flat_photo(2).save(src / "train" / "mask1.png")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = run_module("foldtrain.facecrop", ["--src", str(src), "--dst", str(dst_of(src))], cwd=REPO, timeout=120)
    assert proc.returncode != 0 and "--dst" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_killed_run_resumes_without_detecting_again(tmp_path, monkeypatch):
    src, dst = tmp_path / "raw", tmp_path / "faces"
    src.mkdir()
    face_photo(400, 0, 50).save(src / "normal.jpg")
    flat_photo(1).save(src / "mask1.png")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(crop_module, "write_crops", killed)
    with pytest.raises(KeyboardInterrupt):
        crop_faces(src, dst)
    assert not (dst / REPORT_NAME).exists() and list(dst.glob(f"{JOURNAL_PREFIX}*"))
    monkeypatch.undo()
    monkeypatch.setattr(crop_module, "make_mtcnn", lambda device: pytest.fail("pass 1 ran again"))
    report = crop_faces(src, dst)
    assert report["path"].tolist() == ["mask1.png", "normal.jpg"] and report["detected"].tolist() == [False, True]
    assert (dst / "normal.jpg").is_file() and not list(dst.glob(f"{JOURNAL_PREFIX}*"))


def test_crops_of_every_image_mode_are_rgb_and_upright(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    Image.new("L", (100, 50), 128).save(src / "gray.png")
    Image.new("RGBA", (100, 50), (255, 0, 0, 0)).save(src / "rgba.png")
    Image.new("P", (100, 50), 3).save(src / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated to portrait
    Image.new("RGB", (100, 50), (0, 0, 255)).save(src / "rotated.jpg", exif=exif)
    rows = pd.DataFrame({"path": ["gray.png", "rgba.png", "palette.png", "rotated.jpg"], "x1": 0, "y1": 0,
                         "x2": [100, 100, 100, 50], "y2": [50, 50, 50, 100]})
    assert write_crops(src, tmp_path / "faces", rows) == []
    for row in rows.itertuples():
        crop = Image.open(tmp_path / "faces" / row.path)
        assert crop.mode == "RGB" and crop.size == (row.x2, row.y2), row.path
    assert Image.open(tmp_path / "faces" / "rgba.png").getpixel((0, 0)) == (255, 255, 255)


def test_crop_box_geometry():
    settings = CropSettings()
    assert grow_box((100.0, 100.0, 250.0, 290.0), CANVAS, settings) == (70, 40, 280, 320)
    assert grow_box((10.5, 20.5, 160.0, 210.0), CANVAS, settings) == (0, 0, 190, 240)
    # A 75 px face with scaled margins gets half the margins.
    assert grow_box((100.0, 100.0, 175.0, 190.0), CANVAS, CropSettings(scale_margins=True)) == (85, 70, 190, 205)
    assert fallback_box(CANVAS, (256.0, 340.0), None) == (64, 86, 320, 426)
    assert fallback_box(CANVAS, (256.0, 340.0), (100.0, 150.0)) == (0, 0, 228, 320)
    assert fallback_box(CANVAS, (256.0, 340.0), (900.0, 150.0)) == (64, 86, 320, 426)


def test_crop_cache_dir_tracks_settings_and_files(raw_root, tmp_path):
    first = crop_cache_dir(raw_root, CropSettings(), tmp_path)
    assert first.parent == tmp_path.resolve()
    assert crop_cache_dir(raw_root, CropSettings(), tmp_path) == first
    assert crop_cache_dir(raw_root, CropSettings(margins=(10, 20, 10, 10)), tmp_path) != first
    assert crop_cache_dir(raw_root, CropSettings(detect_size=None), tmp_path) != first


def test_ensure_face_crops_builds_once_and_rebuilds_on_change(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    face_photo(400, 0, 50).save(src / "normal.png")
    (src / "labels.csv").write_text("path,label\nnormal.png,0\n")
    cache_root = tmp_path / "cache"
    built = ensure_face_crops(src, CropSettings(), cache_root)
    assert built == crop_cache_dir(src, CropSettings(), cache_root)
    assert (built / "normal.png").is_file() and (built / "labels.csv").is_file() and (built / META_NAME).is_file()
    stamp = (built / "normal.png").stat().st_mtime_ns
    assert ensure_face_crops(src, CropSettings(), cache_root) == built
    assert (built / "normal.png").stat().st_mtime_ns == stamp
    (src / "labels.csv").write_text("path,label\nnormal.png,1\n")
    rebuilt = ensure_face_crops(src, CropSettings(), cache_root)
    assert rebuilt != built and (rebuilt / "labels.csv").read_text().endswith("1\n")


@pytest.mark.slow
def test_two_processes_split_the_work_and_agree_with_one(raw_root, cropped, tmp_path):
    single, _ = cropped
    dst = tmp_path / "faces"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port()), "-m", "foldtrain.facecrop", "--src", str(raw_root),
              "--dst", str(dst)]
    proc = subprocess.run(launch, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("16 images") == 1, "only the main process prints the summary"
    assert relative_files(dst, images=True) == relative_files(raw_root, images=True)
    one, two = report(single), report(dst)
    assert list(two.index) == list(one.index)
    assert (two["detected"] == one["detected"]).all()
    # Batches differ between the runs, so float rounding may move an edge by a pixel.
    assert (two[["x1", "y1", "x2", "y2"]] - one[["x1", "y1", "x2", "y2"]]).abs().to_numpy().max() <= 2


@pytest.mark.parametrize("plant, named", [
    ("secret.txt", "secret.csv"),  # a table-like link to a file outside the source
    ("etc", "etc"),  # a folder link leading outside
    ("outside.png", "outside.png"),  # an image linked from outside: would become a regular file in the crops
])
def test_links_out_of_the_source_are_refused_and_nothing_is_copied_through_them(tmp_path, plant: str, named: str):
    src = tmp_path / "raw"
    (src / "images").mkdir(parents=True)
    flat_photo(3).save(src / "images" / "mask1.png")
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "secret").write_text("password\n")
    flat_photo(4).save(outside / "inner" / "photo.png")
    flat_photo(5).save(outside / "photo.png")
    link = {"secret.txt": (src / "images" / "secret.csv", outside / "secret"),
            "etc": (src / "images" / "etc", outside / "inner"),
            "outside.png": (src / "images" / "outside.png", outside / "photo.png")}[plant]
    link[0].symlink_to(link[1])
    dst = tmp_path / "faces"
    proc = run_module("foldtrain.facecrop", ["--src", str(src), "--dst", str(dst)], cwd=REPO, timeout=240)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and named in error[0] and "outside" in error[0] and "follow" in error[0]
    copied = [p for p in dst.rglob("*") if p.is_file()] if dst.exists() else []
    assert not any("password" in p.read_text(errors="ignore") for p in copied)
    assert not any(p.name in ("photo.png", "outside.png", "secret.csv") for p in copied)


def test_dangling_links_and_loops_get_one_line(tmp_path):
    src = tmp_path / "raw"
    (src / "images").mkdir(parents=True)
    flat_photo(3).save(src / "images" / "mask1.png")
    (src / "images" / "again").symlink_to(src / "images", target_is_directory=True)  # a loop inside the source
    (src / "notes.txt").write_text("not data")
    dst = tmp_path / "faces"
    proc = run_module("foldtrain.facecrop", ["--src", str(src), "--dst", str(dst)], cwd=REPO, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "link loop" in proc.stdout + proc.stderr and (dst / "images" / "mask1.png").is_file()
    assert not (dst / "notes.txt").exists() and "neither images nor tables" in proc.stdout + proc.stderr
    (src / "images" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    proc = run_module("foldtrain.facecrop", ["--src", str(src), "--dst", str(dst)], cwd=REPO, timeout=240)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and "gone.jpg is a broken link" in error[0]
