"""``python -m deeplabv3plus <command> [options]``: the same as the installed ``deeplabv3plus`` command."""

import sys

from deeplabv3plus.cli import main

if __name__ == "__main__":
    sys.exit(main())
