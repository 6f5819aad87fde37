# Set-up and entry points. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-services benchmark reports clean
SERVICES := orthanc orthanc-dicomweb chromium dicom3tools

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# exact versions from constraints.txt, torch first, so that nothing pulls the CUDA build from the index
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m medseg_dropclass demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal tests   # two one-thread workers (tests/conftest.py) that steal queued tests; -n 0: one process

# the PACS round trip (a real Orthanc), the review page in Chromium, dciodvfy on a SEG: Debian packages, installed
# here when missing (root or sudo)
test-services: $(STAMP)
	@command -v Orthanc >/dev/null && command -v chromium >/dev/null && command -v dciodvfy >/dev/null \
	  && [ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $(SERVICES) >/dev/null \
	  || { $$SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $(SERVICES) >/dev/null; }; }
	$(PY) -m pytest -q -m services tests

# every study's report and the alternatives' decision table, rewritten from the committed per-run results (nothing
# trained, no dataset needed); tests/study/test_study_files.py fails when a committed one differs
reports: $(STAMP)
	$(PY) -m medseg_dropclass study-report studies/*.yaml
	$(PY) -m medseg_dropclass study-report studies/alternatives_phantoms.yaml studies/alternatives_camvid.yaml \
	  studies/alternatives_acdc.yaml studies/alternatives_acdc_on_logit.yaml --decision-table docs/alternatives_decision.md

benchmark: $(STAMP)
	$(PY) benchmarks/step_overhead.py
	$(PY) benchmarks/loss_overhead.py
	$(PY) benchmarks/copy_paste_overhead.py

clean:
	rm -rf $(VENV) outputs
