"""What the command-line tools share: argument types, one-line errors and their exit codes."""

import argparse
import sys

from .datasets import DatasetError

EXIT_DATA_ERROR = 1
EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line on stderr and exit 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def run(main, prog):
    """Run ``main()`` and exit with its status; a data or file problem becomes one line on stderr and exit 1.

    ``ValueError`` covers what the estimator and the kernels reject in the data
    (a wrong shape, a label out of range) and a model file that is not one.
    """
    try:
        status = main()
    except (DatasetError, OSError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        status = EXIT_DATA_ERROR
    sys.exit(status)
