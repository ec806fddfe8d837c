"""Speed next to smp and torchvision: ``python scripts/benchmark.py --device cpu --modes infer``.

A thin face over ``deeplabv3plus benchmark`` (the installed command; logic in :mod:`deeplabv3plus.cli`).
"""

from deeplabv3plus.cli import run_script

if __name__ == "__main__":
    run_script("benchmark", "benchmark.py")
