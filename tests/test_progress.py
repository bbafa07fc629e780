"""Progress bars: redrawn in place on a terminal, a few plain lines in a log."""

from __future__ import annotations

import io

from mmgpt.progress import LineWriter, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_in_a_log_writes_a_few_whole_lines():
    log = io.StringIO()
    bar = progress_bar(total=1000, desc="instruct", unit="step", dynamic_ncols=True, stream=log)
    for _ in range(1000):
        bar.update(1)
        bar.set_postfix(loss="1.234")
    bar.close()
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and text.endswith("\n")
    # one line as it starts and one as it ends: a fast loop stays within the 30-second interval
    assert len(lines) <= 3, lines
    assert lines[0].startswith("instruct:") and "0/1000" in lines[0]
    assert "1000/1000" in lines[-1] and "loss=1.234" in lines[-1]


def test_a_log_line_at_most_every_interval_and_the_last_state_on_close():
    now = [0.0]
    out = io.StringIO()
    writer = LineWriter(out, interval=30, clock=lambda: now[0])
    for second in range(0, 100):
        now[0] = float(second)
        writer.write(f"\rstep {second}   ")
    writer.write("\rstep 100 done")
    writer.write("\n")
    assert out.getvalue().splitlines() == ["step 0", "step 30", "step 60", "step 90", "step 100 done"]


def test_a_bar_on_a_terminal_redraws_in_place():
    screen = Terminal()
    for _ in progress_bar(range(50), desc="vision tower", stream=screen, mininterval=0):
        pass
    assert screen.getvalue().count("\r") > 10


def test_line_writer_keeps_the_last_redraw_and_writes_a_state_once():
    out = io.StringIO()
    writer = LineWriter(out)
    assert writer.write("\rstep 1   \rstep 2  ") == len("\rstep 1   \rstep 2  ")
    writer.write("\rstep 2")  # the same state again, as tqdm redraws it on close
    writer.write("\n")
    writer.write("\n")
    writer.write("")
    assert out.getvalue() == "step 2\n"
