from __future__ import annotations

import os
from pathlib import Path

from gateway.policy import Policy, PolicyError
from gateway.policy.watcher import PolicyWatcher, fingerprint

GOOD = 'rules:\n  - paths: ["/**"]\n    allow: authenticated\n'


def touch_later(path: Path) -> None:
    """Make the edit visible even on filesystems with coarse timestamps."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


async def test_watcher_loads_changes_and_keeps_last_good(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    loaded: list[Policy] = []
    failed: list[PolicyError] = []
    watcher = PolicyWatcher(tmp_path, case_insensitive=False, on_loaded=loaded.append, on_failed=failed.append)

    assert not await watcher.check()  # nothing changed since construction

    (tmp_path / "b.yaml").write_text('rules:\n  - paths: ["/x"]\n    deny: true\n')
    assert await watcher.check()
    assert len(loaded) == 1 and len(loaded[0].rules) == 2

    (tmp_path / "b.yaml").write_text("rules: [oops\n")
    touch_later(tmp_path / "b.yaml")
    assert await watcher.check()
    assert len(failed) == 1 and "b.yaml" in str(failed[0])
    assert len(loaded) == 1

    (tmp_path / "b.yaml").unlink()
    assert await watcher.check()
    assert len(loaded) == 2 and len(loaded[1].rules) == 1

    (tmp_path / ".#a.yaml").write_text("editor lock file")
    (tmp_path / "notes.txt").write_text("ignored")
    assert not await watcher.check()


def test_fingerprint_of_missing_folder(tmp_path: Path) -> None:
    assert fingerprint(tmp_path / "missing") is None


async def test_compare_first_loads_once_whatever_the_fingerprint(tmp_path: Path) -> None:
    """For a caller whose policy was loaded before the watcher existed: an edit in between is seen."""
    (tmp_path / "a.yaml").write_text(GOOD)
    loaded: list[Policy] = []
    watcher = PolicyWatcher(tmp_path, case_insensitive=False, on_loaded=loaded.append, on_failed=print,
                            compare_first=True)
    assert await watcher.check() and len(loaded) == 1
    assert not await watcher.check()
