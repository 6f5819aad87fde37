"""``python -m medseg_dropclass <command>``: see :mod:`medseg_dropclass.apps.cli`."""

from medseg_dropclass.apps.cli import main

if __name__ == "__main__":
    main()
