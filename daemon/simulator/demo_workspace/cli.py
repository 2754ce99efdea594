"""greet: a tiny command-line tool for the steer demo."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="greet", description="Print a friendly greeting.")
    parser.add_argument("name", help="who to greet")
    args = parser.parse_args(argv)
    print(f"Hello, {args.name}!")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
