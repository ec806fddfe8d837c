"""Convert a reference TensorFlow checkpoint: ``python scripts/convert_tf_checkpoint.py --checkpoint DIR/model.ckpt --kind ... --output x.pth``.

A thin face over ``deeplabv3plus convert`` (the installed command; the work is
:func:`deeplabv3plus.convert.convert_tf_checkpoint`).
"""

from deeplabv3plus.cli import run_script

if __name__ == "__main__":
    run_script("convert", "convert_tf_checkpoint.py")
