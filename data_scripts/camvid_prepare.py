"""`python -m medseg_dropclass convert camvid` as a script (the code lives in medseg_dropclass.apps.convert):

python data_scripts/camvid_prepare.py --input /tmp/camvid/CamVid --output-dir data/camvid_180x240 --size 180 240
"""

from medseg_dropclass.apps.convert import camvid_main

if __name__ == "__main__":
    camvid_main()
