"""A bad command-line option is one error line and exit code 2 in every script, like every other user error
(argparse alone prints its whole usage first)."""
import pytest

import dataloader.make_shards as make_shards
import model.export as export
import eval_suite
import extract_features
import finetune
import linear_probe
import retrieval_eval
import similarity_matrix
import train
import zero_shot_demo
import zeroshot_eval

SCRIPTS = [train, finetune, zeroshot_eval, zero_shot_demo, linear_probe, retrieval_eval, eval_suite,
           extract_features, similarity_matrix, make_shards, export]


@pytest.mark.parametrize("argv", [["--no_such_option", "1"], ["--precision", "fp8"]], ids=["unknown", "bad value"])
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda script: script.__name__)
def test_a_bad_option_is_one_line_and_exit_2(script, argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        script.main(argv)
    error = capsys.readouterr().err
    assert stopped.value.code == 2
    assert len(error.strip().splitlines()) == 1 and error.startswith("error: ") and "--help" in error
