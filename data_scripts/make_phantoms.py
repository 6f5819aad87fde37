"""`python -m medseg_dropclass convert phantoms` as a script (the code lives in medseg_dropclass.apps.convert):

python data_scripts/make_phantoms.py --output-dir data/phantom2d_v2 --spatial-dims 2
"""

from medseg_dropclass.apps.convert import phantoms_main

if __name__ == "__main__":
    phantoms_main()
