"""prepare_voc builds train_aug = VOC train ∪ SBD train ∪ SBD val − VOC val on tiny VOC/SBD trees."""

from __future__ import annotations

import io
import runpy
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplabv3plus import cli
from deeplabv3plus.config import DataConfig
from deeplabv3plus.data import prepare
from deeplabv3plus.data.datasets import build_dataset, check_config_leakage
from deeplabv3plus.data.prepare import (
    PrepareError,
    build_train_aug,
    prepare_voc,
    train_aug_names,
)
from deeplabv3plus.data.voc_meta import save_label_png

VOC_TRAIN, VOC_VAL = ["v1", "v2", "v3"], ["v4", "v5"]
SBD_TRAIN, SBD_VAL = ["s1", "v1", "v4"], ["s2", "v2", "s3"]  # v4 is VOC val: must not enter train_aug
TRAIN_AUG = ["s1", "s2", "s3", "v1", "v2", "v3"]


def _label(seed: int, void: bool) -> np.ndarray:
    label = np.random.default_rng(seed).integers(0, 21, (10, 14)).astype(np.uint8)
    if void:
        label[0, :] = 255  # VOC labels have a void band; SBD's do not
    return label


def _make_trees(base: Path) -> tuple[Path, Path]:
    """A VOC2012 tree (5 segmentation images) and an SBD benchmark_RELEASE tree (5 .mat labels)."""
    scipy_io = pytest.importorskip("scipy.io")  # here: the archive-safety tests need no scipy
    voc = base / "VOCdevkit" / "VOC2012"
    sbd = base / "benchmark_RELEASE" / "dataset"
    for d in (voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets" / "Segmentation"):
        d.mkdir(parents=True)
    for d in (sbd / "img", sbd / "cls"):
        d.mkdir(parents=True)
    rgb = Image.new("RGB", (14, 10), (90, 120, 30))
    for i, name in enumerate(VOC_TRAIN + VOC_VAL):
        rgb.save(voc / "JPEGImages" / f"{name}.jpg")
        save_label_png(_label(i, void=True), voc / "SegmentationClass" / f"{name}.png")
    for name in ("s1", "s2"):
        rgb.save(voc / "JPEGImages" / f"{name}.jpg")  # SBD images are VOC images
    rgb.save(sbd / "img" / "s3.jpg")  # ... except this one, which prepare must copy over
    for i, name in enumerate(sorted(set(SBD_TRAIN + SBD_VAL))):
        struct = {"Segmentation": _label(100 + i, void=False), "Boundaries": np.zeros((1, 20), dtype=object)}
        scipy_io.savemat(str(sbd / "cls" / f"{name}.mat"), {"GTcls": struct})
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(VOC_VAL) + "\n")
    (sbd / "train.txt").write_text("\n".join(SBD_TRAIN) + "\n")
    (sbd / "val.txt").write_text("\n".join(SBD_VAL) + "\n")
    return voc, sbd


def test_train_aug_is_voc_train_and_sbd_minus_voc_val() -> None:
    assert train_aug_names(VOC_TRAIN, VOC_VAL, SBD_TRAIN, SBD_VAL) == TRAIN_AUG


def test_prepare_voc_writes_train_aug_labels_and_list(tmp_path: Path) -> None:
    voc, sbd = _make_trees(tmp_path)
    counts = build_train_aug(voc, sbd, allow_count_mismatch=True)
    assert counts == dict(train_aug=6, val=2, from_voc=5, from_sbd=3)
    assert (voc / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split() == TRAIN_AUG
    aug = voc / "SegmentationClassAug"
    assert sorted(p.stem for p in aug.glob("*.png")) == sorted(TRAIN_AUG + VOC_VAL)
    # VOC's own label wins where it exists (with its void band), SBD's .mat elsewhere.
    np.testing.assert_array_equal(np.array(Image.open(aug / "v1.png")), _label(0, void=True))
    s1 = Image.open(aug / "s1.png")
    assert s1.mode == "P"
    np.testing.assert_array_equal(
        np.array(s1), _label(100 + sorted(set(SBD_TRAIN + SBD_VAL)).index("s1"), False)
    )
    assert (voc / "JPEGImages" / "s3.jpg").is_file()

    cfg = DataConfig(layout="voc", root=str(tmp_path), train_split="train_aug", crop_size=9)
    check_config_leakage(cfg)
    assert build_dataset(cfg, "train_aug", train=True).names == TRAIN_AUG
    assert build_dataset(cfg, "train_aug", train=True)[0][1].shape == (9, 9)
    assert build_dataset(DataConfig(layout="voc_aug", root=str(tmp_path)), "train_aug", train=False)[4][
        1
    ].shape == (
        10,
        14,
    )


def test_prepare_voc_count_mismatch_is_an_error(tmp_path: Path) -> None:
    voc, sbd = _make_trees(tmp_path)
    with pytest.raises(
        PrepareError, match="train_aug has 6 images, expected 10582; val has 2 images, expected 1449"
    ):
        build_train_aug(voc, sbd)


def test_missing_scipy_is_an_error_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    voc, sbd = _make_trees(tmp_path)
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # makes `from scipy.io import ...` fail
    with pytest.raises(PrepareError, match=r'pip install "deeplabv3plus\[scipy\]"'):
        build_train_aug(voc, sbd, allow_count_mismatch=True)


def test_prepare_voc_script_extracts_archives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_trees(tmp_path / "src")
    with tarfile.open(tmp_path / "VOCtrainval_11-May-2012.tar", "w") as tar:
        tar.add(tmp_path / "src" / "VOCdevkit", arcname="VOCdevkit")
    with tarfile.open(tmp_path / "benchmark.tgz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    out = tmp_path / "out"
    script = Path(__file__).parents[2] / "scripts" / "prepare_voc.py"
    argv = ["prepare_voc.py", "--voc", str(tmp_path / "VOCtrainval_11-May-2012.tar")]
    argv += ["--sbd", str(tmp_path / "benchmark.tgz"), "--out", str(out), "--allow-count-mismatch"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(script), run_name="__main__")
    assert exited.value.code == 0
    lst = out / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt"
    assert lst.read_text().split() == TRAIN_AUG
    # A second run finds the extracted folders instead of extracting again.
    assert prepare_voc(None, None, out, allow_count_mismatch=True) == out / "VOCdevkit" / "VOC2012"


def test_prepare_voc_script_reports_a_missing_archive_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    script = Path(__file__).parents[2] / "scripts" / "prepare_voc.py"
    monkeypatch.setattr(
        sys, "argv", ["prepare_voc.py", "--voc", str(tmp_path / "no.tar"), "--out", str(tmp_path)]
    )
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(script), run_name="__main__")
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prepare_voc.py: error: ") and "no.tar" in err and "\n" not in err


def test_prepare_voc_without_inputs_or_download_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="VOC not found in .*--download"):
        prepare_voc(None, None, tmp_path)


# --- hostile archives: nothing is written outside the output folder, on every Python ----------------

HAS_STANDARD_FILTER = hasattr(tarfile, "data_filter")


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


def _hostile_members(outside: Path) -> dict[str, list[tarfile.TarInfo]]:
    """Per hostile kind: the members after a harmless first file, the culprit named in the error."""
    return {
        "symlink then a file through it": [
            _member("VOCdevkit/link", tarfile.SYMTYPE, str(outside)),
            _member("VOCdevkit/link/x.txt"),
        ],
        "relative symlink out": [_member("VOCdevkit/up", tarfile.SYMTYPE, "../../outside")],
        "hard link": [_member("VOCdevkit/hard", tarfile.LNKTYPE, str(outside / "x.txt"))],
        "fifo": [_member("VOCdevkit/fifo", tarfile.FIFOTYPE)],
        "character device": [_member("VOCdevkit/dev", tarfile.CHRTYPE)],
        "absolute name": [_member(str(outside / "x.txt"))],
        "dot-dot name": [_member("VOCdevkit/../../outside/x.txt")],
    }


def _write_tar(path: Path, members: list[tarfile.TarInfo]) -> Path:
    """A tar holding a harmless ``first.txt`` then ``members`` (regular ones with 3 bytes of data)."""
    with tarfile.open(path, "w") as tar:
        for info in [_member("first.txt"), *members]:
            data = b"abc" if info.isreg() else None
            info.size = len(data) if data else 0
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


@pytest.fixture(params=["without the standard filter", "with the standard filter"])
def standard_filter(request, monkeypatch) -> bool:
    """Runs a test as on Python 3.9.0-3.9.16/3.10.0-3.10.11/3.11.0-3.11.3 (no tarfile.data_filter),
    then with Python's data filter where this Python has it."""
    if request.param.startswith("without"):
        monkeypatch.setattr(prepare, "_standard_filter", lambda: None)
        return False
    if not HAS_STANDARD_FILTER:
        pytest.skip(f"Python {sys.version.split()[0]} has no tarfile.data_filter")
    return True


def _assert_refused_in_one_line(archive: Path, out: Path, outside: Path, capsys, *culprits: str) -> None:
    code = cli.main(["prepare-voc", "--voc", str(archive), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and err.strip().endswith(errors[0]), err
    for culprit in (str(archive), *culprits):
        assert culprit in errors[0], f"{culprit!r} not named in: {errors[0]}"
    assert list(outside.iterdir()) == [], "written outside the output folder"
    assert not (out / "first.txt").exists(), "extraction started before the archive was checked"


@pytest.mark.parametrize(
    "kind",
    ["symlink then a file through it", "relative symlink out", "hard link", "fifo", "character device",
     "absolute name", "dot-dot name"],
)  # fmt: skip
def test_a_hostile_archive_member_is_refused_in_one_line_before_anything_is_extracted(
    tmp_path, capsys, standard_filter, kind
) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    members = _hostile_members(outside)[kind]
    archive = _write_tar(tmp_path / "VOCtrainval_11-May-2012.tar", members)
    _assert_refused_in_one_line(archive, out, outside, capsys, repr(members[0].name))


def test_a_member_resolving_outside_through_a_link_in_the_output_folder_is_refused(
    tmp_path, capsys, standard_filter
) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    out.mkdir()
    (out / "VOCdevkit").symlink_to(outside, target_is_directory=True)
    archive = _write_tar(tmp_path / "VOCtrainval_11-May-2012.tar", [_member("VOCdevkit/x.txt")])
    _assert_refused_in_one_line(
        archive, out, outside, capsys, "'VOCdevkit/x.txt'", "outside the output folder"
    )


def test_a_member_refused_by_pythons_own_filter_ends_in_one_line_naming_it(
    tmp_path, capsys, monkeypatch
) -> None:
    if not HAS_STANDARD_FILTER:
        pytest.skip(f"Python {sys.version.split()[0]} has no tarfile.data_filter")

    def stricter(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
        if member.name == "VOCdevkit/x.txt":  # a refusal the library's own check does not make
            raise tarfile.OutsideDestinationError(member, str(tmp_path / "outside" / "x.txt"))
        return tarfile.data_filter(member, path)

    monkeypatch.setattr(prepare, "_standard_filter", lambda: stricter)
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    archive = _write_tar(tmp_path / "VOCtrainval_11-May-2012.tar", [_member("VOCdevkit/x.txt")])
    code = cli.main(["prepare-voc", "--voc", str(archive), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert str(archive) in line and "'VOCdevkit/x.txt'" in line and "filter" in line, line


def test_a_corrupt_archive_is_an_error_naming_it(tmp_path) -> None:
    archive = tmp_path / "benchmark.tgz"
    archive.write_bytes(b"not a tar archive at all" * 10)
    with pytest.raises(PrepareError, match="benchmark.tgz' is not a readable tar archive"):
        prepare.extract(archive, tmp_path / "out")


# Python 3.12-3.13 warn when extractall runs without filter=, as the (simulated) older Pythons do.
@pytest.mark.filterwarnings("ignore:.*filter extracted tar archives:DeprecationWarning")
def test_an_archive_of_files_and_folders_extracts_in_both_modes(tmp_path, standard_filter) -> None:
    archive = _write_tar(
        tmp_path / "a.tar", [_member("VOCdevkit", tarfile.DIRTYPE), _member("VOCdevkit/x.txt")]
    )
    prepare.extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "VOCdevkit" / "x.txt").read_bytes() == b"abc"
    assert (tmp_path / "out" / "first.txt").read_bytes() == b"abc"
