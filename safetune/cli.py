"""`safetune <command>`: one entry point; every command has --help.

Errors a user can fix come out as one line on stderr with exit code 2, never a traceback; exit 1 is
kept for an answer (the audit's FAIL or CANNOT JUDGE)."""
from __future__ import annotations

import argparse
import os
import sys

from .errors import SafetuneError


class _Parser(argparse.ArgumentParser):
    """argparse's own refusals in the house style: one line, exit 2."""

    def error(self, message: str):
        """Print argparse's refusal as one `safetune: error:` line and exit 2."""
        print(f"safetune: error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The `safetune` parser: each command family in safetune.commands registers its own parsers."""
    from .commands import FAMILIES

    parser = _Parser(prog="safetune", description="Safety alignment of text-to-image diffusion models that survives "
                     "fine-tuning. Every command has --help.")
    parser.add_argument("-v", "--verbose", action="store_true", help="details and library notices too")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="warnings and errors only (no stage messages: what starts, what it found)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: all cores). Two jobs at once on one machine: give each "
                             "--threads 1; their threads otherwise fight and each runs several times slower")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command", parser_class=_Parser)
    for family in FAMILIES:
        family.register(sub)
    return parser


def _set_threads(n: int | None) -> None:
    if n is None:
        return
    if not 1 <= n <= 1024:
        raise SafetuneError(f"--threads {n}: give 1 to the number of cores ({os.cpu_count()})")
    import torch

    torch.set_num_threads(n)


def main(argv: list[str] | None = None) -> int:
    """Run a command; returns the exit code (2: a user error, one line on stderr; 1: an audit's FAIL)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a refused argument (2)
        return int(exc.code or 0)
    from .messages import configure

    configure(1 if args.verbose else -1 if args.quiet else 0)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not args.verbose:  # library notices (e.g. "torchvision not installed") are not our output
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from .io import release_claims

    try:
        _set_threads(args.threads)
        code = args.func(args)
    except (SafetuneError, FloatingPointError) as exc:
        print(f"safetune: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `safetune ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("safetune: interrupted; finished outputs and checkpoints are kept (run again to resume)", file=sys.stderr)
        return 130
    finally:
        release_claims()
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
