"""A run about to replace a finished run's files says so first (from Python and the commands)."""

from keras_bp.training import runlog


def test_a_run_says_when_it_replaces_a_finished_run(tmp_path, capsys):
    runlog.say_if_replacing(tmp_path / "new")  # nothing there yet
    (tmp_path / "killed" / "resume").mkdir(parents=True)
    (tmp_path / "killed" / "metrics.json").write_text("{}")
    runlog.say_if_replacing(tmp_path / "killed")  # resumes instead: says so elsewhere
    assert capsys.readouterr().out == ""
    (tmp_path / "finished").mkdir()
    (tmp_path / "finished" / "metrics.json").write_text("{}")
    runlog.say_if_replacing(tmp_path / "finished")
    said = capsys.readouterr().out
    assert said.startswith(f"{tmp_path / 'finished'} holds a finished run: this run replaces")
    assert said.count("\n") == 1
