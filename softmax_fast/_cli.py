"""What the command-line tools share: argument types, one-line errors and their exit codes."""

import argparse
import math
import sys

from .datasets import DatasetError, DatasetUnavailableError, _one_line

EXIT_DATA_ERROR = 1
EXIT_USAGE = 2
# 128 + SIGINT, as shells report a command that Ctrl-C stopped.
EXIT_INTERRUPTED = 130


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


def seed(text):
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text}")
    return value


def positive_float(text):
    return _float_in(text, lambda value: value > 0, "a finite number > 0")


def non_negative_float(text):
    return _float_in(text, lambda value: value >= 0, "a finite number >= 0")


def below_one(text):
    return _float_in(text, lambda value: 0 <= value < 1, "a number >= 0 and < 1")


def fraction(text):
    return _float_in(text, lambda value: 0 < value < 1, "a number strictly between 0 and 1")


def _float_in(text, accept, expected):
    """``float(text)`` if it is finite and ``accept`` takes it; else an argparse error saying what was ``expected``."""
    value = float(text)
    if not (math.isfinite(value) and accept(value)):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def run(main, prog):
    """Run ``main()`` and exit with its status; a data or file problem becomes one line on stderr and exit 1.

    ``ValueError`` covers what the estimator and the kernels reject in the data
    (a wrong shape, NaN, a label out of range), a diverging run and a model
    file that is not one. Only a data set that no source could deliver keeps
    its message of several lines: the sources tried and where to put the
    files. Ctrl-C where nothing else handles it is one line and exit 130.
    """
    try:
        status = main()
    except (DatasetError, OSError, ValueError) as exc:
        message = str(exc) if isinstance(exc, DatasetUnavailableError) else _one_line(exc)
        print(f"{prog}: error: {message}", file=sys.stderr)
        status = EXIT_DATA_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    sys.exit(status)
