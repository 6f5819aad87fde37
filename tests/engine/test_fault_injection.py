"""Exact resume: a training run killed at several points (random moments, and inside checkpoint saves) and
restarted ends with the same weights, optimizer state, model.pt and best epoch as an uninterrupted run,
bitwise, on CPU at the same thread count. The longer version: benchmarks/fault_injection.py."""

from tests.engine.fault_injection import KillPoint, differences, final_state, run_with_kills, timed, train_command

OPTIONS = {"max_epochs": 6, "val_interval": 2, "batch_size": 2}  # the smallest run with a save to kill in each restart


def test_a_run_killed_anywhere_and_restarted_ends_bitwise_equal_to_an_uninterrupted_one(phantom2d, tmp_path):
    duration = timed(train_command(phantom2d, tmp_path / "straight", **OPTIONS))
    reference = final_state(tmp_path / "straight")
    assert reference["iteration"] == 6 * 2 and reference["best"]["best_epoch"] in (2, 4, 6)
    # each run counts its own saves: epoch checkpoints, and model.pt before the checkpoint of a validated epoch
    kills = [
        KillPoint(delay=0.75 * duration),  # in training, after some epoch checkpoints (start-up is ~half of this run)
        KillPoint(save=2, mode="during"),  # half of the restarted run's 2nd file written
        KillPoint(save=2, mode="after_rename"),  # the next run's 2nd file just renamed into place, nothing after it
    ]
    log = run_with_kills(train_command(phantom2d, tmp_path / "killed", **OPTIONS), kills)
    assert sum("killed" in line for line in log) >= 2, (
        log
    )  # a kill point past the end of a resumed run just lets it finish
    assert differences(reference, final_state(tmp_path / "killed")) == [], log
