"""Fault injection: the run SIGKILLed at random moments (start-up, mid-step, inside a checkpoint write), resumed
with --resume auto each time, ends with the same weights and log as an uninterrupted run."""
import random
import sys
import time

import pytest

from training_runs import (TOTAL_STEPS, assert_bit_identical, final_weights, run, run_in_process, start,
                           train_command, wait_for)
from trainer.run_log import read_log
from utils.atomic_files import temporary_files

# train.py with each training checkpoint written in two halves 0.3 s apart, so that a kill can land inside a write.
SLOW_CHECKPOINT_WRITES = """
import io, sys, time, torch
real_save = torch.save
def save_in_two_halves(payload, file, *args, **kwargs):
    if not (isinstance(payload, dict) and "rng" in payload):
        return real_save(payload, file, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(payload, buffer, *args, **kwargs)
    data = buffer.getvalue()
    file.write(data[:len(data) // 2]); file.flush(); time.sleep(0.3); file.write(data[len(data) // 2:])
torch.save = save_in_two_halves
import train
sys.exit(train.main(sys.argv[1:]))
"""


def kill_inside_a_checkpoint_write(process, run_dir, rng):
    # or no write comes: a run resumed at its end (killed after its last checkpoint) only finishes
    wait_for(lambda: temporary_files(run_dir / "checkpoints") or process.poll() is not None, process)


def kill_at_a_random_moment(process, run_dir, rng):
    time.sleep(rng.uniform(0.5, 8.0))  # from interpreter start-up to several training steps in


def kill_and_resume(command, run_dir, moments, seed):
    """Start the run (resuming) and SIGKILL it at each of `moments`, then let it finish; returns the kills made."""
    rng = random.Random(seed)
    kills = 0
    for moment in moments:
        process = start([sys.executable, "-c", SLOW_CHECKPOINT_WRITES, *command[2:]])
        moment(process, run_dir, rng)
        if process.poll() is not None:  # a late random moment: the run had already finished
            assert process.returncode == 0, process.communicate()
            break
        process.kill()
        process.wait()
        kills += 1
    assert run_in_process(command) == 0
    return kills


def test_killed_twice_once_inside_a_checkpoint_write_ends_as_uninterrupted(coco_dataset, uninterrupted_run,
                                                                         tmp_path):
    command = train_command(coco_dataset, tmp_path, "--resume", "auto")
    moments = [kill_inside_a_checkpoint_write, kill_at_a_random_moment]
    assert kill_and_resume(command, tmp_path, moments, seed=7) >= 1
    assert_bit_identical(final_weights(tmp_path), final_weights(uninterrupted_run))
    assert [record["step"] for record in read_log(tmp_path)] == list(range(1, TOTAL_STEPS + 1))


@pytest.mark.slow  # a dozen interpreter start-ups, on a run three times as long
def test_killed_a_dozen_times_at_random_ends_as_uninterrupted(coco_dataset, tmp_path):
    longer = ("train.epochs=6", "checkpoint.every_steps=3")
    reference = run(train_command(coco_dataset, tmp_path / "uninterrupted", *longer))
    assert reference.returncode == 0, reference.stderr
    command = train_command(coco_dataset, tmp_path / "killed", "--resume", "auto", *longer)
    rng = random.Random(1)
    moments = [rng.choice([kill_inside_a_checkpoint_write, kill_at_a_random_moment]) for _ in range(12)]
    assert kill_and_resume(command, tmp_path / "killed", moments, seed=1) >= 10
    assert_bit_identical(final_weights(tmp_path / "killed"), final_weights(tmp_path / "uninterrupted"))
    assert [record["step"] for record in read_log(tmp_path / "killed")] == list(range(1, 3 * TOTAL_STEPS + 1))
