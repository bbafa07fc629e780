"""metrics.jsonl across a resume."""

from __future__ import annotations

import json

from mmgpt.train.metrics import MetricsWriter


def test_resume_drops_redone_steps_and_a_line_cut_short(tmp_path, caplog):
    # a crash can leave the last row half-written; resuming must not fail on it with a JSON traceback
    path = tmp_path / "metrics.jsonl"
    rows = [json.dumps({"step": step, "loss": 1.0 / step}) for step in (1, 2, 3)]
    path.write_text("\n".join(rows) + '\n{"step": 4, "lo')
    writer = MetricsWriter(path, truncate_after=2)
    writer.write({"step": 3, "loss": 0.5})
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
    assert "metrics.jsonl:4: dropping an unreadable line" in caplog.text
