"""Segment images: ``python scripts/predict.py --checkpoint runs/x/best.pth photo.jpg --output out/``.

A thin face over ``deeplabv3plus predict`` (the installed command; the work is
:func:`deeplabv3plus.predict.predict_run`).
"""

from deeplabv3plus.cli import run_script

if __name__ == "__main__":
    run_script("predict", "predict.py")
