"""``python -m medseg_dropclass <command>``: a thin command line over the package."""

import sys
from typing import List, Optional

COMMANDS = {"demo": "train DropClass and a baseline briefly on generated data and report per-class IoU/Dice"}


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m medseg_dropclass <command> [options]\n\ncommands:")
        for name, description in COMMANDS.items():
            print(f"  {name:<8} {description}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
            sys.exit(2)
        return
    if argv[0] == "demo":
        from medseg_dropclass.demo import demo_main

        demo_main(argv[1:])


if __name__ == "__main__":
    main()
