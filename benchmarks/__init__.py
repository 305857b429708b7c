"""creatio-attach's benchmarks (``make bench``, ``python -m benchmarks``): a report, not a test.

Each scenario runs the real daemon (``creatio-attach run``) and the emulator
(``creatio-attach emulator``) as subprocesses, measures a figure and, in the same run and
against the same emulator (reset in between), the baseline it is compared with. The report
is printed as a table and saved as JSON in ``bench-results/<timestamp>.json``. Goals are
printed as PASS or MISS; a MISS never fails the run.

Modules: ``common`` (scales, results, waiting, test files), ``processes`` (the emulator and
the daemon as subprocesses, memory and CPU sampling, what was stored), ``baselines``
(curl and plain ``requests`` clients), one module per scenario (``big_file``, ``small_files``,
``latency``, ``backlog``), ``report`` (table and JSON). The package talks to creatio-attach the
way a user does, through its command line and HTTP: it imports nothing from ``creatio_attach``
except the version and the CLI group (to find the ``run`` command).
"""
