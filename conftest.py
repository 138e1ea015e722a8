"""Repository-wide pytest set-up (library tests and nbval notebook runs).

Notebooks executed by nbval cannot receive parameters, so they read the profile and the run
folder from the environment: the smoke profile and a throw-away run folder.
"""
import os
import tempfile


def pytest_configure(config):
    os.environ.setdefault("WEAKHAND_PROFILE", "smoke")
    os.environ.setdefault("WEAKHAND_HEADLESS", "1")
    if "WEAKHAND_RUN_DIR" not in os.environ:
        os.environ["WEAKHAND_RUN_DIR"] = tempfile.mkdtemp(prefix="weakhand-nbval-")
