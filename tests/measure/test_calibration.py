"""Calibration text: a bad file is named for what it is (not "vocabulary"), in one line."""

import pytest

from mof.measure.calibration import builtin_text, load_calibration_text
from mof.runtime.errors import MofError


@pytest.mark.parametrize("content, message", [
    (None, "cannot read calibration text"), (b"\xff\xfe\x00bad", "calibration text is not UTF-8"),
    (b"x", "too short"),
])
def test_bad_calibration_files(tmp_path, content, message):
    path = tmp_path / "cal.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MofError) as e:
        load_calibration_text(path)
    assert message in str(e.value) and "vocabulary" not in str(e.value) and "\n" not in str(e.value)


def test_builtin_and_given_text(tmp_path):
    assert len(builtin_text()) > 500 and load_calibration_text() == builtin_text()
    (tmp_path / "cal.txt").write_text("床前明月光", encoding="utf-8")
    assert load_calibration_text(tmp_path / "cal.txt") == "床前明月光"
