"""Atomic writes: the complete file or the old one, with the mode any new file would get."""

import os

import pytest

from keras_bp.runtime import atomic


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(umask, mode, tmp_path):
    old = os.umask(umask)
    try:
        atomic.write_json(tmp_path / "metrics.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == mode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.write_json(target, {"old": True})
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text('{"new": tru')
        raise RuntimeError("killed mid-write")
    assert target.read_text().strip().startswith('{\n  "old": true')
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
