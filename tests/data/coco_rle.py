"""COCO run-length encoding written independently of the package's decoder, for the tests' annotations."""

import numpy as np


def rle_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of an (h, w) bool mask in column-major order, starting with a 0-run."""
    flat = mask.T.reshape(-1)
    counts, current, run = [], False, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return counts
