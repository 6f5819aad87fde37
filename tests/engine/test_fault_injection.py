"""Exact resume: a training run killed at several points (in training, and inside checkpoint saves) and
restarted ends with the same weights, optimizer state, model.pt and best epoch as an uninterrupted run,
bitwise, on CPU at the same thread count, rare-object copy-paste included. The longer version: benchmarks/fault_injection.py."""

from tests.engine.fault_injection import KillPoint, differences, final_state, run_with_kills, timed, train_command

# the smallest run with a save to kill in each restart; with rare-object copy-paste, whose bank is rebuilt after a
# restart and whose random state comes back from the checkpoint (the default pipeline's transforms are in it too)
OPTIONS = {"max_epochs": 6, "val_interval": 2, "batch_size": 2, "copy_paste": "{'prob': 1.0, 'max_objects': 2}"}


def test_a_run_killed_anywhere_and_restarted_ends_bitwise_equal_to_an_uninterrupted_one(phantom2d, tmp_path):
    timed(train_command(phantom2d, tmp_path / "straight", **OPTIONS))
    reference = final_state(tmp_path / "straight")
    assert reference["iteration"] == 6 * 2 and reference["best"]["best_epoch"] in (2, 4, 6)
    # each run counts its own saves: epoch checkpoints, and model.pt before the checkpoint of a validated epoch
    kills = [
        KillPoint(step=5),  # in epoch 3's training, after epoch 2's checkpoint and model.pt (a step, not a time:
        # a delay lands in a different epoch on a loaded machine, and a kill past a resumed run's end kills nothing)
        KillPoint(save=2, mode="during"),  # half of the restarted run's 2nd file written
        KillPoint(save=2, mode="after_rename"),  # the next run's 2nd file just renamed into place, nothing after it
    ]
    log = run_with_kills(train_command(phantom2d, tmp_path / "killed", **OPTIONS), kills)
    assert [line.endswith("killed") for line in log] == [True, True, True, False], log
    assert differences(reference, final_state(tmp_path / "killed")) == [], log
