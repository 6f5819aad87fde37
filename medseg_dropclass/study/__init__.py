"""Studies: a study file (``studies/<name>.yaml``) run over arms and seeds (``compare``), the crossed seed x case
statistics, and the reports and tables generated from committed per-run results. May import every lower floor
(``dropclass``, ``networks``, ``evaluation``, ``data``, ``engine``); nothing below imports it."""
