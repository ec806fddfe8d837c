"""The imbalanced example set of docs/own_data.md: one rare class among 4 (texture synthetic set).

    python scripts/make_imbalanced_synthetic.py data/imbalanced

Generates the texture synthetic set (4 classes: background, ring, cross, star; 480 train and 80
val images of ~96 px, ``deeplabv3plus make-synthetic``) and writes a training list,
``ImageSets/Segmentation/train_rare.txt``, holding every training image without a star (class 3)
and only the first ``RARE_IMAGES`` images with one: the star becomes a rare class in training
(printed: its share of the labelled pixels), while ``val.txt`` keeps the generator's natural mix,
so the star's IoU is measured on as many stars as the other classes get.
"""

import sys

import numpy as np
from PIL import Image

from deeplabv3plus.data.synthetic import make_synthetic_voc

RARE = 3
RARE_IMAGES = 6


def main(root: str) -> None:
    voc = make_synthetic_voc(root, num_train=480, num_val=80, size=96, seed=0, num_classes=4, kind="texture")
    names = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    keep, with_rare, counts = [], 0, np.zeros(256, np.int64)
    for name in names:
        label = np.asarray(Image.open(voc / "SegmentationClass" / f"{name}.png"))
        if (label == RARE).any():
            if with_rare == RARE_IMAGES:
                continue
            with_rare += 1
        keep.append(name)
        counts += np.bincount(label.reshape(-1), minlength=256)
    (voc / "ImageSets" / "Segmentation" / "train_rare.txt").write_text("\n".join(keep) + "\n")
    shares = counts[:4] / counts[:4].sum()
    print(
        f"wrote {voc / 'ImageSets' / 'Segmentation' / 'train_rare.txt'}: {len(keep)} images, "
        f"{with_rare} with class {RARE}; class pixel shares {np.round(shares, 4).tolist()}"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/imbalanced")
