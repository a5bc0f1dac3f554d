"""The schema module: statuses read as their plain words, and summary.json round-trips (old files too)."""

import json

import pandas as pd

from resbench.schema import DONE, STATUS_COLOURS, Status, Summary, status_colour


def test_a_status_is_its_plain_word_in_json_csv_and_pandas() -> None:
    assert json.dumps({"status": Status.DIVERGED}) == '{"status": "diverged"}'
    assert f"{Status.NOT_RUN}" == "not run" and Status("completed") is Status.COMPLETED
    assert "completed" in DONE and "failed" not in DONE
    assert pd.Series(["completed", "failed"]).isin(DONE).tolist() == [True, False]
    assert STATUS_COLOURS.get("diverged") == "yellow" and status_colour("failed") == "red"


def test_an_old_summary_reads_and_keeps_fields_it_does_not_know() -> None:
    old = {"status": "completed", "steps_done": 5, "final_loss": 1.5, "final_val_loss": None, "wall_s": 2.0,
           "n_params": 10, "error": None, "from_a_newer_version": 7}
    summary = Summary.from_dict(old)
    assert summary.status == Status.COMPLETED and summary.final_val_acc is None and summary.resumes == 0
    written = json.loads(json.dumps(summary.to_dict()))
    assert {key: written[key] for key in old} == old
    assert "extra" not in written
