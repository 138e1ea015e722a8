"""weakhand.io atomic directories with concurrent writers (DDP ranks build the same artifact)."""
import subprocess
import sys

import pytest

from weakhand.io import TMP_MARK, atomic_directory, clean_stale_temporaries


def test_stale_temporaries_of_dead_writers_go_live_ones_stay(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    target = tmp_path / "data"
    (tmp_path / f"data{TMP_MARK}{dead}-abc").mkdir()       # killed writer
    (tmp_path / f"data{TMP_MARK}legacyname").mkdir()       # no pid: older versions
    live = tmp_path / f"data{TMP_MARK}1-xyz"               # pid 1 is always alive
    live.mkdir()
    removed = {p.name for p in clean_stale_temporaries(target)}
    assert removed == {f"data{TMP_MARK}{dead}-abc", f"data{TMP_MARK}legacyname"}
    assert live.exists()


def test_concurrent_writer_finishing_first_wins_without_error(tmp_path):
    target = tmp_path / "twin"
    with atomic_directory(target) as tmp:
        (tmp / "x.txt").write_text("mine")
        target.mkdir()                                     # another rank completed it meanwhile
        (target / "x.txt").write_text("theirs")
    assert (target / "x.txt").read_text() == "theirs"
    assert not list(tmp_path.glob(f"twin{TMP_MARK}*"))


def test_existing_directory_still_refused_up_front_and_replaced_with_overwrite(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    with pytest.raises(FileExistsError):
        with atomic_directory(target):
            pass
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new").write_text("1")
    assert (target / "new").exists() and not list(tmp_path.glob(f"d{TMP_MARK}*"))
