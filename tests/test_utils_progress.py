"""pcseg.utils.progress: a bar at a terminal, one plain line per step in logs and CI."""

import io
import sys

from pcseg.utils.progress import progress


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_output_gets_one_line_per_step(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    seen = list(progress(range(1000), desc="epoch 1/3", unit="step"))
    assert seen == list(range(1000))
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and "\r" not in err.getvalue()
    assert lines[0].startswith("epoch 1/3: 1000/1000 step done in ")


def test_manual_updates_and_postfix(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with progress(total=10, desc="segmenting", unit="pt", initial=2) as bar:
        bar.update(5)
        bar.set_postfix(loss="0.5")
    assert err.getvalue().splitlines() == [err.getvalue().splitlines()[0]]
    assert err.getvalue().startswith("segmenting: 7/10 pt done in ")
    assert err.getvalue().rstrip().endswith("loss=0.5")


def test_long_step_prints_periodic_lines(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    for _ in progress(range(3), desc="rooms", unit="room", log_every_s=0.0):
        pass
    lines = err.getvalue().splitlines()
    assert [line.split(" in ")[0] for line in lines] == [
        "rooms: 1/3 room running",
        "rooms: 2/3 room running",
        "rooms: 3/3 room running",
        "rooms: 3/3 room done",
    ]


def test_disabled_prints_nothing(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert list(progress(range(5), desc="x", enabled=False)) == list(range(5))
    assert err.getvalue() == ""


def test_terminal_gets_a_tqdm_bar(monkeypatch):
    err = _FakeTerminal()
    monkeypatch.setattr(sys, "stderr", err)
    bar = progress(range(3), desc="bar")
    assert type(bar).__name__ == "tqdm"
    bar.close()
