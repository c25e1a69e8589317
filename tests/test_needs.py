"""conftest.needs: a test that depends on something outside the repository skips where it is
missing, but fails under CI=true, naming it, so that CI never passes by skipping what it must run."""
import pytest

import conftest


class Item:
    def __init__(self, *marks):
        self.marks = [m.mark for m in marks]

    def iter_markers(self, name):
        return [m for m in self.marks if m.name == name]


def test_a_missing_requirement_fails_under_ci_and_skips_elsewhere(monkeypatch):
    item = Item(conftest.needs(True, "present"), conftest.needs(False, "the files at X"))
    monkeypatch.setattr(conftest, "CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI runs this test, and the files at X is missing"):
        conftest.pytest_runtest_setup(item)
    monkeypatch.setattr(conftest, "CI", False)
    with pytest.raises(pytest.skip.Exception, match="the files at X is missing"):
        conftest.pytest_runtest_setup(item)
    conftest.pytest_runtest_setup(Item(conftest.needs(True, "present")))      # present: runs
