"""What the entry points share: --config/--out/overrides, the --out folder (locked,
owned, resolved config written there: lib/runfolder.py), and one line with exit
status 2 for user mistakes and for operating-system errors (disk full, permission
denied)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from lib.config import Config, load_config
from lib.errors import UserError
from lib.runfolder import open_run_folder, write_config

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_parser(description: str, default_config: str, default_out: str, tool: str) -> argparse.ArgumentParser:
    """Parser with the arguments every entry point takes; callers add their own.
    `tool`: the entry point's file name (owner of the --out folders it writes)."""
    parser = argparse.ArgumentParser(
        prog=tool,
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


def parse_config(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    before_write: Callable[[str, Config], None] | None = None,
) -> tuple[argparse.Namespace, Config]:
    """Parse argv, load the config, open --out (create, lock, check the owner, remove
    stale temporaries), call before_write(out, cfg) (e.g. train.py's resume check, which
    must see the folder's previous run untouched) and write the resolved config there."""
    # Intermixed, so overrides may stand before, between or after the options.
    args = parser.parse_intermixed_args(argv)
    cfg = load_config(args.config, args.overrides)
    open_run_folder(args.out, parser.prog)
    if before_write is not None:
        before_write(args.out, cfg)
    write_config(args.out, cfg, parser.prog)
    return args, cfg


def describe_os_error(err: OSError) -> str:
    """'<file>: <reason>' for an operating-system error (one line)."""
    reason = err.strerror or str(err) or type(err).__name__
    names = [str(n) for n in (err.filename, err.filename2) if n is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run an entry point: user errors become one line on stderr and exit status 2."""
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # disk full, permission denied, ...: the environment, not a bug
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
