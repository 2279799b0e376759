"""The collector pause used around bulk steps puts the collector back as it found it."""

from __future__ import annotations

import gc

import pytest

from modelkeep._gc import collector_paused


def test_collector_is_off_inside_and_restored_after_even_on_errors() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested: the inner block must not turn it back on
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_caller_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_as_a_decorator_each_call_pauses_and_restores() -> None:
    seen = []

    @collector_paused()
    def step(fail: bool) -> None:
        seen.append(gc.isenabled())
        if fail:
            raise ValueError("step failed")

    step(False)
    with pytest.raises(ValueError):
        step(True)
    step(False)
    assert seen == [False, False, False] and gc.isenabled()
