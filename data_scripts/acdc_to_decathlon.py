"""`python -m medseg_dropclass convert acdc` as a script (the code lives in medseg_dropclass.apps.convert):

python data_scripts/acdc_to_decathlon.py --source h5 --input /path/to/3DCardiac/data/ACDC --output-dir data/acdc
"""

from medseg_dropclass.apps.convert import acdc_main

if __name__ == "__main__":
    acdc_main()
