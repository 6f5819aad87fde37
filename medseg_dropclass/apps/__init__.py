"""Applications on top of the library: the command line (``cli``), prediction (``predict``, its review page ``review``,
the PACS round trip ``pacs``), export, packaging, model cards and the demo.
The top floor: it may import everything below; nothing in the library imports it (the bundles' inference config
calls ``apps.predict`` as a bundle-level entry point)."""
