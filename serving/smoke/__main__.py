"""``python -m serving.smoke [--cache-dir DIR]``: build (or reuse) the smoke checkpoint."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from serving.config import PathSettings
from serving.smoke.build import ensure_smoke_checkpoint, recipe_hash


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving.smoke",
        description="Build (or reuse) the tiny gpt-oss checkpoint that CPU hosts serve.",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: SERVING_CACHE_DIR")
    parser.add_argument("--print-hash", action="store_true", help="print the recipe hash only")
    args = parser.parse_args(argv)
    if args.print_hash:
        print(recipe_hash())
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cache_dir = args.cache_dir or PathSettings().cache_dir
    print(ensure_smoke_checkpoint(cache_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
