"""``python -m medseg_dropclass <command>``: a thin command line over the package."""

import sys
from typing import List, Optional

COMMANDS = {
    "demo": "both arms of the phantom2d bundle briefly on the embedded phantoms, per-class report",
    "compare": "baseline vs DropClass (and variants) over seeds: per-class tables, paired tests, plots",
}


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
    elif argv[0] == "compare":
        from medseg_dropclass.analysis.compare import compare_main

        compare_main(argv[1:])


if __name__ == "__main__":
    main()
