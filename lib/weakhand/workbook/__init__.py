"""The workbook layer: runs the notebooks and keeps their run folders; no science here.

- :mod:`~weakhand.workbook.profiles`: the size knobs per profile (smoke / cpu / gpu) and the
  notebook configuration (:func:`~weakhand.workbook.profiles.resolve`);
- :mod:`~weakhand.workbook.runs`: run folders (``runs/<name>``), their artifacts and summaries;
- :mod:`~weakhand.workbook.runner`: ``weakhand run`` (papermill, one notebook after another);
- :mod:`~weakhand.workbook.ablate`: ``weakhand ablate`` (shared stages once, stage 3 per seed);
- :mod:`~weakhand.workbook.runlock`: one writer per run folder;
- :mod:`~weakhand.workbook.envinfo`: versions, git state and the lock file, for run records;
- :mod:`~weakhand.workbook.cli`: the ``weakhand`` command (its subcommands, including
  ``weakhand bench`` from the repository's ``benchmarks/suite.py``).

It sits above the science (data, models, losses, bmc, methods, train, evaluation) and imports
from it, never the other way round. Importing this package imports none of its modules.
"""
