"""Evaluate a checkpoint with the NoW-style scan-to-mesh error (Pixel-Face or synthetic)."""
from __future__ import annotations

from lib.cli import make_parser, parse_config, run
from lib.errors import UserError


def main(argv=None) -> int:
    parser = make_parser(__doc__, "configs/synthetic.yaml", "runs/test_pixel_face")
    parser.add_argument("--checkpoint", default="", help="checkpoint to evaluate")
    parse_config(parser, argv)
    raise UserError("evaluation is not yet available (issue 6)")


if __name__ == "__main__":
    run(main)
