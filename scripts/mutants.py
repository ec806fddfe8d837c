"""A hand-made mutation pass: does the test suite catch one-line bugs in the code that matters?

Not part of the test suite. Each mutant is a one-line string replacement in a package file; the
script applies it in place, runs only the test files relevant to it (``-x -q``), restores the file
(always, also on Ctrl-C), and records whether a test failed (caught) or not (survived)::

    nice python scripts/mutants.py                      # every mutant, a markdown table on stdout
    nice python scripts/mutants.py --only aspp-concat   # by name (repeatable)
    nice python scripts/mutants.py --without tests/models/test_regression.py   # which bugs only it catches

Run it from the repository root on a clean working tree (it refuses to run otherwise).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODELS = ("tests/models/test_semantics.py", "tests/models/test_regression.py", "tests/models/test_deeplab.py")
INFERENCE = ("tests/test_inference.py",)
METRICS = ("tests/test_metrics.py",)
# The schedule and optimiser tests of test_train.py (its DDP and torchrun tests take minutes).
TRAIN = tuple(
    f"tests/jobs/test_train.py::{name}"
    for name in (
        "test_poly_lr_follows_the_formula_number_by_number",
        "test_weight_decay_applies_to_conv_weights_only",
        "test_param_groups_hold_exactly_the_expected_tensors_with_their_decay_and_lr",
        "test_train_applies_the_poly_lr_of_every_group_at_every_iteration",
    )
)
NAMES = ("tests/weights/test_tf_names.py",)
TABLES = ("tests/data/test_tables.py", "tests/data/test_cityscapes_ade20k.py")
TRANSFORMS = ("tests/data/test_transforms.py",)
BUILDERS = ("tests/test_builders.py",)
PORTABLE = ("tests/weights/test_portable.py",)
CHECK = ("tests/data/test_check.py",)
LABEL_FORMATS = ("tests/data/test_label_formats.py", "tests/data/test_mask_formats.py")
TRAIN_RECORD = ("tests/jobs/test_train_record.py",)  # two tiny runs and check_recipe: under a minute


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


M = "deeplabv3plus/models/"
MUTANTS = [
    # models
    Mutant("logits-upsample-align-corners", M + "deeplab.py",
           'mode="bilinear", align_corners=self.align_corners)\n', 'mode="bilinear", align_corners=False)\n', MODELS),
    Mutant("decoder-upsample-align-corners", M + "decoder.py",
           'mode="bilinear", align_corners=self.align_corners\n', 'mode="bilinear", align_corners=False\n', MODELS),
    Mutant("decoder-projection-no-relu", M + "decoder.py",
           "ConvBNReLU(low_level_in, low_level_channels, 1)", "ConvBNReLU(low_level_in, low_level_channels, 1, relu=False)",
           MODELS),
    Mutant("decoder-concat-order", M + "decoder.py",
           "torch.cat([encoder_out, low_level], dim=1)", "torch.cat([low_level, encoder_out], dim=1)", MODELS),
    Mutant("aspp-concat-order", M + "aspp.py",
           "torch.cat([pooled, *branches], dim=1)", "torch.cat([*branches, pooled], dim=1)", MODELS),
    Mutant("aspp-dropout-before-projection", M + "aspp.py",
           "return self.dropout(self.project(torch.cat([pooled, *branches], dim=1)))",
           "return self.project(self.dropout(torch.cat([pooled, *branches], dim=1)))", MODELS),
    Mutant("aspp-rates-inverted", M + "aspp.py",
           "round(r * 16 / output_stride)", "round(r * output_stride / 16)", MODELS),
    Mutant("aspp-max-pooling", M + "aspp.py", "nn.AdaptiveAvgPool2d(1)", "nn.AdaptiveMaxPool2d(1)", MODELS),
    Mutant("separable-no-relu-between", M + "layers.py",
           "x = self.act_dw(self.bn_dw(x))", "x = self.bn_dw(x)", MODELS),
    Mutant("xception-low-level-tap-conv1", M + "xception.py",
           'if name == "conv2":', 'if name == "conv1":', MODELS),
    Mutant("xception-no-residual", M + "xception.py", "if not self.has_skip:", "if True:", MODELS),
    Mutant("resnet-beta-low-level-after-add", M + "resnet.py",
           "low_level = self.layer1[1].residual(x)", "low_level = self.layer1[1](x)", MODELS),
    Mutant("classifier-init-std", M + "deeplab.py",
           "nn.init.normal_(self.classifier.weight, std=0.01)", "nn.init.normal_(self.classifier.weight, std=0.1)",
           MODELS),
    # inference
    Mutant("scaled-size-rule", "deeplabv3plus/inference.py",
           "return int((height - 1) * scale + 1), int((width - 1) * scale + 1)",
           "return int(height * scale), int(width * scale)", INFERENCE),
    Mutant("flip-not-undone", "deeplabv3plus/inference.py",
           "probs = torch.where(flipped[:, None, None, None], probs.flip(-1), probs)", "probs = probs", INFERENCE),
    Mutant("slide-default-stride-half", "deeplabv3plus/inference.py",
           "max(1, round(2 * c / 3))", "max(1, round(c / 2))", INFERENCE + ("tests/test_config.py",)),
    Mutant("slide-last-window-not-aligned", "deeplabv3plus/inference.py",
           "min(i * stride, size - crop)", "i * stride", INFERENCE),
    # metrics
    Mutant("iou-union-without-tp", "deeplabv3plus/metrics.py", "union = gt + pr - tp", "union = gt + pr", METRICS),
    Mutant("confusion-transposed", "deeplabv3plus/metrics.py",
           "torch.bincount(target * c + pred,", "torch.bincount(pred * c + target,", METRICS),
    Mutant("pixel-acc-over-classes", "deeplabv3plus/metrics.py",
           '"pixel_acc": (tp.sum() / total).item()', '"pixel_acc": (tp.sum() / m.sum(0).max()).item()', METRICS),
    # schedule and optimiser
    Mutant("poly-off-by-one", "deeplabv3plus/train.py",
           "min(iteration, max_iters) / max_iters", "min(iteration + 1, max_iters) / max_iters", TRAIN),
    Mutant("bn-params-decayed", "deeplabv3plus/train.py",
           "decay = p.ndim > 1 and name not in undecayed", "decay = name not in undecayed", TRAIN),
    Mutant("depthwise-always-decayed", "deeplabv3plus/train.py",
           "decay = p.ndim > 1 and name not in undecayed", "decay = p.ndim > 1", TRAIN),
    Mutant("logits-bias-mult-ignored", "deeplabv3plus/train.py",
           "lr *= cfg.train.logits_bias_lr_mult if is_logits_bias else 1.0", "lr *= 1.0", TRAIN),
    Mutant("reference-bn-momentum-resnet", "deeplabv3plus/catalog.py",
           'reference_bn_momentum=(0.05, 0.0003)', 'reference_bn_momentum=(0.0003, 0.0003)', BUILDERS),
    # weights name maps and layouts
    Mutant("bn-mean-var-swapped", "deeplabv3plus/weights/tf_names.py",
           '("running_mean", "moving_mean"),\n    ("running_var", "moving_variance"),',
           '("running_mean", "moving_variance"),\n    ("running_var", "moving_mean"),', NAMES),
    Mutant("aspp-branches-reversed", "deeplabv3plus/weights/tf_names.py",
           '_separable(key, f"aspp{i + 1}")', '_separable(key, f"aspp{3 - i}")', NAMES),
    Mutant("conv-layout-in-out-swapped", "deeplabv3plus/weights/tf_convert.py",
           "return array.transpose(3, 2, 0, 1)", "return array.transpose(2, 3, 0, 1)", NAMES),
    # dataset tables and the ADE20K resize
    Mutant("cityscapes-car-truck-swapped", "deeplabv3plus/data/cityscapes_meta.py", "26: 13, 27: 14", "26: 14, 27: 13",
           TABLES),
    Mutant("voc-palette-bit-order", "deeplabv3plus/data/voc_meta.py",
           "r |= ((c >> 0) & 1) << (7 - j)", "r |= ((c >> 0) & 1) << j", TABLES),
    Mutant("ade20k-last-two-swapped", "deeplabv3plus/data/ade20k_meta.py", '"clock", "flag"', '"flag", "clock"', TABLES),
    Mutant("resize-factor-rounds-down", "deeplabv3plus/data/transforms.py",
           "size += (factor - (size - 1) % factor) % factor", "size -= (size - 1) % factor", TRANSFORMS),
    # issue #29: behaviours no test pinned before (one mutant each; two where two places hold one rule)
    Mutant("pad-to-only-when-both-sides-short", "deeplabv3plus/inference.py",
           "if height < pad_h or width < pad_w:", "if height < pad_h and width < pad_w:", INFERENCE),
    Mutant("resize-shorter-side-rounded", "deeplabv3plus/data/transforms.py",
           "np.floor(h * large_scale), np.floor(w * large_scale)",
           "np.round(h * large_scale), np.round(w * large_scale)", TRANSFORMS),
    Mutant("portable-stride-from-model-section", "deeplabv3plus/builders.py",
           '(config.get("eval") or {}).get("output_stride") or arch.get("output_stride", 16)',
           'arch.get("output_stride") or (config.get("eval") or {}).get("output_stride", 16)', PORTABLE),
    Mutant("check-data-accepts-label-equal-to-class-count", "deeplabv3plus/data/check.py",
           "0 <= v < num_classes or v == ignore_index", "0 <= v <= num_classes or v == ignore_index", CHECK),
    Mutant("loader-accepts-label-equal-to-class-count", "deeplabv3plus/data/datasets.py",
           "v >= num_classes and v != ignore_index", "v > num_classes and v != ignore_index",
           CHECK + ("tests/data/test_datasets.py",)),
    Mutant("cityscapes-fence-as-object", "deeplabv3plus/data/cityscapes_meta.py",
           "(0, 0, 1, 1, 1, 2, 2, 2, 3, 3,", "(0, 0, 1, 1, 2, 2, 2, 2, 3, 3,", TABLES),
    Mutant("rgba-partly-transparent-accepted", "deeplabv3plus/data/label_formats.py",
           "if (array[..., 3] != 255).any():", "if (array[..., 3] == 0).any():", LABEL_FORMATS),
    Mutant("rgba-opaque-refused", "deeplabv3plus/data/label_formats.py",
           'if mode == "RGBA":', 'if mode == "RGBa":', LABEL_FORMATS),
    Mutant("best-pth-rewritten-on-tie", "deeplabv3plus/train.py",
           "miou > state.best_miou)", "miou >= state.best_miou)", TRAIN_RECORD),
    Mutant("logged-lr-of-first-group", "deeplabv3plus/train.py",
           '"lr": state.optimizer.param_groups[-1]["lr"],', '"lr": state.optimizer.param_groups[0]["lr"],',
           TRAIN_RECORD),
    Mutant("bn-warning-at-batch-8", "deeplabv3plus/train.py",
           "per_device < 8 and", "per_device <= 8 and", TRAIN_RECORD),
]  # fmt: skip


def run(mutant: Mutant, without: tuple[str, ...], timeout: int) -> tuple[str, float]:
    path = ROOT / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        return f"NOT APPLIED ({original.count(mutant.old)} matches)", 0.0
    tests = [
        t for t in mutant.tests if t.split("::")[0] not in without and (ROOT / t.split("::")[0]).exists()
    ]
    start = time.perf_counter()
    try:
        path.write_text(original.replace(mutant.old, mutant.new))
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
        try:
            rc = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return "caught (timeout)", time.perf_counter() - start
    finally:
        path.write_text(original)
    return ("caught" if rc != 0 else "SURVIVED"), time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="run this mutant (by name); repeatable")
    parser.add_argument("--without", action="append", default=[], help="leave this test file out; repeatable")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per mutant")
    args = parser.parse_args()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "deeplabv3plus"], cwd=ROOT, capture_output=True, text=True
    )
    if dirty.stdout.strip():
        print("error: deeplabv3plus/ has uncommitted changes; commit or stash them first", file=sys.stderr)
        return 2
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    print("| mutant | file | result | s |\n|---|---|---|---|")
    counts: dict[str, int] = {}
    for mutant in chosen:
        result, seconds = run(mutant, tuple(args.without), args.timeout)
        counts[result.split(" ")[0]] = counts.get(result.split(" ")[0], 0) + 1
        print(f"| {mutant.name} | {mutant.path} | {result} | {seconds:.0f} |", flush=True)
    print(f"\n{counts.get('caught', 0)} caught, {counts.get('SURVIVED', 0)} survived of {len(chosen)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
