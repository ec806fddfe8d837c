"""Build PASCAL VOC 2012 ``train_aug`` from the VOC 2012 release and the SBD release (offline).

train_aug = VOC 2012 train ∪ SBD train ∪ SBD val − VOC 2012 val: 10,582 images (paper section 4:
the extra annotations of Hariharan et al.).
Written into the VOC2012 folder:

- ``SegmentationClassAug/<name>.png``: palette PNGs for every train_aug and val image; VOC's own
  label (with its 255 void band) where VOC has one, else SBD's ``cls/<name>.mat`` (``GTcls.Segmentation``,
  no void band);
- ``ImageSets/Segmentation/train_aug.txt``.

SBD images missing from ``JPEGImages/`` (none in the official releases) are copied over. The
``voc`` layout then reads ``split=train_aug``, and the ``voc_aug`` layout reads the same folder.
Reading ``.mat`` files needs scipy (``pip install "deeplabv3plus[scipy]"``), imported only here.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path, PureWindowsPath
from typing import Any, Callable, Optional, Union

import numpy as np
from tqdm import tqdm

from .voc_meta import save_label_png

VOC_URLS = (
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    # The mirror torchvision uses (the Oxford host has moved before).
    "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
)
VOC_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
SBD_URLS = (
    "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
    "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
)
SBD_MD5 = "82b4d87ceb2ed10f6038a1cba92111cb"

EXPECTED_TRAIN_AUG = 10582
EXPECTED_VAL = 1449


class PrepareError(RuntimeError):
    """The VOC/SBD inputs are missing, malformed or give unexpected split sizes."""


# ---------------------------------------------------------------------------------------------------
# Archives and downloads.


def download(urls: Union[str, tuple[str, ...]], dest: Path, md5: Optional[str] = None) -> Path:
    """Download the first reachable URL to ``dest`` with a progress bar; verify ``md5`` if given.

    The file is written to ``dest.part`` and renamed when complete, so an interrupted download is
    never mistaken for an archive. An existing ``dest`` is kept.
    """
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in (urls,) if isinstance(urls, str) else urls:
        part = dest.with_name(dest.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                digest = hashlib.md5()
                bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name)
                with open(part, "wb") as f, bar:
                    while chunk := response.read(1 << 20):
                        f.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except OSError as e:
            errors.append(f"{url}: {e}")
            part.unlink(missing_ok=True)
            continue
        if md5 is not None and digest.hexdigest() != md5:
            part.unlink(missing_ok=True)
            raise PrepareError(f"download of {url} is corrupt: md5 {digest.hexdigest()}, expected {md5}")
        part.rename(dest)
        return dest
    raise PrepareError(f"could not download {dest.name}: " + "; ".join(errors))


def _standard_filter() -> Optional[Callable[..., Any]]:
    """Python's own ``data`` extraction filter, or None on Pythons without it (3.9.0-3.9.16,
    3.10.0-3.10.11, 3.11.0-3.11.3: no ``tarfile.data_filter`` and no ``filter=`` argument)."""
    return getattr(tarfile, "data_filter", None)


_SPECIAL_KINDS = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a fifo",
}


def _is_absolute(name: str) -> bool:
    """``/x``, ``\\x`` or a Windows drive (``C:x``): absolute on some system."""
    return name.startswith(("/", "\\")) or bool(PureWindowsPath(name).drive)


def check_members(archive: Path, members: list[tarfile.TarInfo], dest: Path) -> None:
    """Refuse an archive any member of which could write outside ``dest``, before anything is extracted.

    Only regular files and folders are accepted: symlinks, hard links, devices and fifos are refused,
    as are absolute names, names with a ``..`` part, and names that resolve outside ``dest`` through
    links already there (``dest/VOCdevkit -> /elsewhere``). The VOC and SBD releases hold only files
    and folders. Applied on every Python, also where ``tarfile.data_filter`` exists (then both apply).

    Raises:
        PrepareError: one line naming the archive and the member.
    """
    root = dest.resolve()
    for member in members:
        name = member.name
        where = f"archive '{archive}': member {name!r}"
        if member.issym() or member.islnk():
            kind = "a symlink" if member.issym() else "a hard link"
            raise PrepareError(
                f"{where} is {kind} (to {member.linkname!r}); refusing to extract: only files and folders "
                "are expected in a VOC/SBD archive"
            )
        if not (member.isfile() or member.isdir()):
            kind = _SPECIAL_KINDS.get(member.type, f"of tar type {member.type!r}, not a file or folder")
            raise PrepareError(
                f"{where} is {kind}; refusing to extract: only files and folders are expected in a VOC/SBD archive"
            )
        if _is_absolute(name):
            raise PrepareError(f"{where} has an absolute name; refusing to extract (names must be relative)")
        if ".." in re.split(r"[/\\]", name):
            raise PrepareError(f"{where} has a '..' part; refusing to extract (it could leave '{dest}')")
        target = (root / name).resolve()
        if not target.is_relative_to(root):
            raise PrepareError(
                f"{where} resolves to '{target}', outside the output folder '{root}' (through a link "
                "already there); refusing to extract"
            )


def extract(archive: Path, dest: Path) -> None:
    """Extract a tar/tgz archive into ``dest``, refusing an archive any member of which could escape it.

    :func:`check_members` runs first, on every Python; where Python has its own ``data`` filter it
    applies too (a member it refuses ends in a :class:`PrepareError` naming the archive and member).
    Without that filter, modes are limited as it would (no setuid/setgid/sticky or group/other write
    bits, owner read/write).

    Raises:
        PrepareError: a refused member, or a file that is not a readable tar archive.
    """
    print(f"extracting {archive} -> {dest}", file=sys.stderr)
    dest.mkdir(parents=True, exist_ok=True)
    standard = _standard_filter()
    filter_error = getattr(tarfile, "FilterError", ())
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            check_members(archive, members, dest)
            if standard is not None:  # Python >= 3.12 and the security releases of 3.9-3.11
                tar.extractall(dest, members=members, filter=standard)
            else:
                for member in members:  # as the data filter does: no high bits, no go-w, owner rw
                    member.mode = member.mode & 0o755 | (0o700 if member.isdir() else 0o600)
                tar.extractall(dest, members=members)
    except filter_error as e:
        name = e.tarinfo.name if getattr(e, "tarinfo", None) is not None else "?"
        raise PrepareError(
            f"archive '{archive}': member {name!r} refused by Python's tar filter: {e}".replace("\n", " ")
        ) from None
    except (tarfile.TarError, EOFError) as e:
        raise PrepareError(f"'{archive}' is not a readable tar archive: {e}".replace("\n", " ")) from None


def find_voc_dir(path: Path) -> Optional[Path]:
    """The VOC2012 folder (holding JPEGImages/ and SegmentationClass/) at or under ``path``."""
    for cand in (path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir() and (cand / "ImageSets" / "Segmentation").is_dir():
            return cand
    return None


def find_sbd_dir(path: Path) -> Optional[Path]:
    """The SBD ``dataset`` folder (holding cls/, img/, train.txt, val.txt) at or under ``path``."""
    for cand in (path, path / "dataset", path / "benchmark_RELEASE" / "dataset"):
        if (cand / "cls").is_dir() and (cand / "train.txt").is_file():
            return cand
    return None


def _locate(source: Optional[Path], out: Path, kind: str, do_download: bool) -> Path:
    """Resolve ``source`` (folder or archive; None: look in ``out`` / download) to the VOC or SBD folder."""
    find, urls, md5, archive_name = {
        "voc": (find_voc_dir, VOC_URLS, VOC_MD5, "VOCtrainval_11-May-2012.tar"),
        "sbd": (find_sbd_dir, SBD_URLS, SBD_MD5, "benchmark.tgz"),
    }[kind]
    if source is not None and source.is_dir():
        found = find(source)
        if found is None:
            raise PrepareError(
                f"'{source}' is not a {kind.upper()} folder (see docs/datasets.md for the layout)"
            )
        return found
    if source is None:
        found = find(out)
        if found is not None:
            return found
        source = out / archive_name
        if not source.is_file():
            if not do_download:
                raise PrepareError(
                    f"{kind.upper()} not found in '{out}'; pass its archive or folder, or --download"
                )
            download(urls, source, md5)
    if not source.is_file():
        raise PrepareError(f"{kind.upper()} archive '{source}' does not exist")
    if find(out) is None:  # extracted by an earlier run: extracting 2 GB again is wasted time
        extract(source, out)
    found = find(out)
    if found is None:
        raise PrepareError(f"archive '{source}' did not contain the expected {kind.upper()} layout")
    return found


# ---------------------------------------------------------------------------------------------------
# Labels and splits.


def load_sbd_label(path: Path) -> np.ndarray:
    """The class map of an SBD ``cls/*.mat`` file (``GTcls.Segmentation``).

    Returns:
        (H, W) uint8 class indices 0..20.
    """
    try:
        from scipy.io import loadmat
    except ImportError:
        raise PrepareError(
            'reading SBD .mat labels needs scipy: pip install "deeplabv3plus[scipy]"'
        ) from None
    try:
        mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
        seg = mat["GTcls"].Segmentation
    except Exception as e:
        raise PrepareError(
            f"cannot read SBD label '{path}' (expected struct GTcls.Segmentation): {e}"
        ) from None
    seg = np.asarray(seg)
    if seg.ndim != 2 or seg.size == 0 or seg.min() < 0 or seg.max() > 20:
        raise PrepareError(f"SBD label '{path}': expected a 2-D class map with values 0..20")
    return seg.astype(np.uint8)


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise PrepareError(f"missing split list '{path}'")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def train_aug_names(
    voc_train: list[str], voc_val: list[str], sbd_train: list[str], sbd_val: list[str]
) -> list[str]:
    """train_aug = VOC train ∪ SBD train ∪ SBD val − VOC val, sorted (the split arithmetic, pure)."""
    return sorted((set(voc_train) | set(sbd_train) | set(sbd_val)) - set(voc_val))


def build_train_aug(voc_dir: Path, sbd_dir: Path, *, allow_count_mismatch: bool = False) -> dict[str, int]:
    """Write ``SegmentationClassAug/`` and ``train_aug.txt`` into ``voc_dir`` (idempotent).

    Args:
        voc_dir: The VOC2012 folder.
        sbd_dir: SBD's ``benchmark_RELEASE/dataset`` folder.
        allow_count_mismatch: Warn instead of failing when the split sizes differ from
            10,582 / 1,449 (e.g. on tiny test trees or a deliberately reduced set).

    Returns:
        Counts: train_aug, val, from_voc (labels copied from VOC), from_sbd (converted .mat labels).

    Raises:
        PrepareError: a missing list/label/image, or unexpected counts without ``allow_count_mismatch``.
    """
    seg_lists = voc_dir / "ImageSets" / "Segmentation"
    voc_train, voc_val = _read_list(seg_lists / "train.txt"), _read_list(seg_lists / "val.txt")
    sbd_train, sbd_val = _read_list(sbd_dir / "train.txt"), _read_list(sbd_dir / "val.txt")
    names = train_aug_names(voc_train, voc_val, sbd_train, sbd_val)

    # Check the counts before hours of conversion rather than after.
    problems = []
    if len(names) != EXPECTED_TRAIN_AUG:
        problems.append(f"train_aug has {len(names)} images, expected {EXPECTED_TRAIN_AUG}")
    if len(voc_val) != EXPECTED_VAL:
        problems.append(f"val has {len(voc_val)} images, expected {EXPECTED_VAL}")
    if problems:
        msg = "; ".join(problems) + f" (VOC '{voc_dir}', SBD '{sbd_dir}')"
        if not allow_count_mismatch:
            raise PrepareError(msg + "; pass --allow-count-mismatch if this is deliberate")
        print(f"WARNING: {msg}", file=sys.stderr)

    out_dir = voc_dir / "SegmentationClassAug"
    out_dir.mkdir(exist_ok=True)
    counts = dict(train_aug=len(names), val=len(voc_val), from_voc=0, from_sbd=0)
    for name in tqdm(sorted(set(names) | set(voc_val)), desc="SegmentationClassAug", unit="label"):
        out = out_dir / f"{name}.png"
        voc_label = voc_dir / "SegmentationClass" / f"{name}.png"
        if voc_label.is_file():  # VOC's own label is preferred: it has the void band SBD lacks
            if not out.is_file():
                shutil.copyfile(voc_label, out)
            counts["from_voc"] += 1
        else:
            mat = sbd_dir / "cls" / f"{name}.mat"
            if not mat.is_file():
                raise PrepareError(f"no label for '{name}': neither '{voc_label}' nor '{mat}' exists")
            if not out.is_file():
                save_label_png(load_sbd_label(mat), out)
            counts["from_sbd"] += 1
        image = voc_dir / "JPEGImages" / f"{name}.jpg"
        if not image.is_file():
            sbd_image = sbd_dir / "img" / f"{name}.jpg"
            if not sbd_image.is_file():
                raise PrepareError(f"no image for '{name}': neither '{image}' nor '{sbd_image}' exists")
            shutil.copyfile(sbd_image, image)
    (seg_lists / "train_aug.txt").write_text("\n".join(names) + "\n")
    return counts


def prepare_voc(
    voc: Optional[Union[str, Path]] = None,
    sbd: Optional[Union[str, Path]] = None,
    out: Union[str, Path] = "data",
    *,
    download_missing: bool = False,
    allow_count_mismatch: bool = False,
) -> Path:
    """Locate or extract (or download) VOC 2012 and SBD, then build train_aug.

    Args:
        voc: VOC 2012 archive (``VOCtrainval_11-May-2012.tar``) or folder; None looks in ``out``.
        sbd: SBD archive (``benchmark.tgz``) or folder; None looks in ``out``.
        out: Where archives are extracted (and downloaded to).
        download_missing: Download archives not found, from the official URLs.
        allow_count_mismatch: See :func:`build_train_aug`.

    Returns:
        The VOC2012 folder, ready for ``data.layout=voc data.train_split=train_aug``.
    """
    out = Path(out)
    voc_dir = _locate(Path(voc) if voc is not None else None, out, "voc", download_missing)
    sbd_dir = _locate(Path(sbd) if sbd is not None else None, out, "sbd", download_missing)
    counts = build_train_aug(voc_dir, sbd_dir, allow_count_mismatch=allow_count_mismatch)
    print(
        f"train_aug: {counts['train_aug']} images, val: {counts['val']} "
        f"({counts['from_voc']} VOC labels, {counts['from_sbd']} SBD labels) in {voc_dir}",
        file=sys.stderr,
    )
    return voc_dir
