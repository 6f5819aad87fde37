"""The MONAI bundles of medseg_dropclass (installed as ``medseg_dropclass.bundles``; data files only).

``_base/configs`` holds the configuration every bundle shares; each ``<bundle>/configs/train.yaml``
states only what differs. ``python -m medseg_dropclass run <bundle> <config>`` merges the two.
"""
