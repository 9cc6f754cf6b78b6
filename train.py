"""Train DF-MVR. With no arguments: the CPU-sized synthetic preset (configs/synthetic.yaml)."""
from __future__ import annotations

from lib.cli import make_parser, parse_config, run
from lib.errors import UserError


def main(argv=None) -> int:
    parser = make_parser(__doc__, "configs/synthetic.yaml", "runs/train")
    parse_config(parser, argv)
    raise UserError("training is not yet available (issue 7)")


if __name__ == "__main__":
    run(main)
