"""Reconstruct faces from folders of views: textured meshes and overlay pictures out."""
from __future__ import annotations

from lib.cli import make_parser, parse_config, run
from lib.errors import UserError


def main(argv=None) -> int:
    parser = make_parser(__doc__, "configs/synthetic.yaml", "runs/test_sample")
    parser.add_argument("--input", default="", help="folder of views (samples/ layout or one folder per subject)")
    parser.add_argument("--checkpoint", default="", help="trained network checkpoint")
    parser.add_argument("--fit", action="store_true", help="fit by analysis-by-synthesis")
    parse_config(parser, argv)
    raise UserError("reconstruction is not yet available (issue 8)")


if __name__ == "__main__":
    run(main)
