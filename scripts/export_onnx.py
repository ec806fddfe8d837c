"""Export to ONNX: ``python scripts/export_onnx.py --checkpoint runs/x/best.pth --output model.onnx``.

A thin face over ``deeplabv3plus export`` (the installed command; the work is
:func:`deeplabv3plus.export.export_checkpoint`).
"""

from deeplabv3plus.cli import run_script

if __name__ == "__main__":
    run_script("export", "export_onnx.py")
