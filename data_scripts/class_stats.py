"""`python -m medseg_dropclass convert class-stats` as a script (the code lives in medseg_dropclass.apps.convert):

python data_scripts/class_stats.py decathlon data/phantom2d_v2 --output-dir outputs/stats/phantom2d
"""

from medseg_dropclass.apps.convert import class_stats_main

if __name__ == "__main__":
    class_stats_main()
