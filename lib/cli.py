"""What the three entry points share: --config/--out/overrides, the resolved config
written under --out, and one-line errors for user mistakes."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from lib.config import Config, load_config, save_config
from lib.errors import UserError

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_parser(description: str, default_config: str, default_out: str) -> argparse.ArgumentParser:
    """Parser with the arguments every entry point takes; callers add their own."""
    parser = argparse.ArgumentParser(
        description=description,
        epilog="Trailing section.key=value arguments override the config, e.g. "
        "train.epochs=5 data.synthetic.num_train=64 (see lib/config/schema.py).",
    )
    parser.add_argument(
        "--config",
        default=os.path.join(PROJECT_ROOT, default_config),
        help=f"YAML config over the schema defaults (default: {default_config})",
    )
    parser.add_argument(
        "--out", default=default_out, help=f"output folder for every file written (default: {default_out})"
    )
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    return parser


def parse_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> tuple[argparse.Namespace, Config]:
    """Parse argv, load the config, create --out and write the resolved config there."""
    # Intermixed, so overrides may stand before, between or after the options.
    args = parser.parse_intermixed_args(argv)
    cfg = load_config(args.config, args.overrides)
    os.makedirs(args.out, exist_ok=True)
    save_config(cfg, os.path.join(args.out, "config.yaml"))
    return args, cfg


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run an entry point: user errors become one line on stderr and exit status 2."""
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
