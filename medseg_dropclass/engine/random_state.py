"""The random state of a training run, as a checkpointable object: what makes a resume exact.

A resumed run draws the same batches, crops and flips as an uninterrupted one only if it restarts from
the same random streams: torch's (the data loader's shuffling, dropout), numpy's and Python's global
generators, and the ``numpy.random.RandomState`` each MONAI random transform owns (seeded once when MONAI's
``DataLoader`` is built, then advanced by every sample). MONAI's checkpoints hold none of them.
"""

import random
from typing import Any, Dict, List

import numpy as np
import torch
from monai.transforms import Randomizable

__all__ = ["TrainingRandomState", "random_transforms"]


def random_transforms(root: Any) -> List[Randomizable]:
    """Every MONAI ``Randomizable`` reachable from ``root`` (a dataset, a ``Compose``, a transform), in a
    fixed order (depth first through lists, tuples, dicts and attributes)."""
    found: List[Randomizable] = []
    seen = set()

    def visit(obj: Any) -> None:
        if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, bool, torch.Tensor, np.ndarray)):
            return
        seen.add(id(obj))
        if isinstance(obj, Randomizable):
            found.append(obj)
        if isinstance(obj, (list, tuple)):
            children = list(obj)
        elif isinstance(obj, dict):
            children = list(obj.values())
        elif hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] in ("monai", "medseg_dropclass"):
            children = [
                value for key, value in vars(obj).items() if key not in ("data", "_cache")
            ]  # not the cached samples
        else:
            children = []
        for child in children:
            visit(child)

    visit(root)
    return found


def _numpy_state(state: tuple) -> Dict[str, Any]:
    name, keys, position, has_gauss, cached = state
    return {
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(position),
        "has_gauss": int(has_gauss),
        "gauss": float(cached),
    }


def _from_numpy_state(state: Dict[str, Any]) -> tuple:
    return ("MT19937", state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"], state["gauss"])


def _distinct(states: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The distinct generator states of a checkpoint written before 2026-12-03, which held one state per transform
    (a shared generator's state repeated): equal states are one generator (two generators seeded apart are never
    equal), in first-seen order as :class:`TrainingRandomState` lists its generators."""
    distinct: List[Dict[str, Any]] = []
    for state in states:
        if not any(_same(state, seen) for seen in distinct):
            distinct.append(state)
    return distinct


def _same(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    return (a["pos"], a["has_gauss"], a["gauss"]) == (b["pos"], b["has_gauss"], b["gauss"]) and torch.equal(
        a["keys"], b["keys"]
    )


class TrainingRandomState:
    """``state_dict`` / ``load_state_dict`` of every random stream a training run draws from.

    Put it in the training checkpoint (after the objects whose loading could draw random numbers): the
    restore happens when the checkpoint is loaded, before the first batch of the resumed epoch. Stored as
    tensors and plain numbers, so it loads with ``torch.load(weights_only=True)``.

    Args:
        dataset: the training dataset (its transforms' generators are found by :func:`random_transforms`).
    """

    def __init__(self, dataset: Any) -> None:
        self.transforms = random_transforms(getattr(dataset, "transform", dataset))
        # the generators, not the transforms, hold the state: a dictionary transform and its array transform (or
        # a transform and the sub-transforms it delegates to) share one; saved once each, in first-seen order, so
        # a sub-transform that shares its parent's generator does not change what a checkpoint holds
        self.generators: List[np.random.RandomState] = list({id(t.R): t.R for t in self.transforms}.values())

    def state_dict(self) -> Dict[str, Any]:
        version, internal, gauss = random.getstate()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state(np.random.get_state()),
            "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
            "generators": [_numpy_state(g.get_state()) for g in self.generators],
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        saved_generators = state["generators"] if "generators" in state else _distinct(state["transforms"])
        if len(saved_generators) != len(self.generators):
            raise ValueError(
                f"the checkpoint holds the state of {len(saved_generators)} transform random generator(s), this pipeline "
                f"has {len(self.generators)}: resuming with a different preprocessing cannot be exact"
            )
        torch.set_rng_state(state["torch"].cpu())
        np.random.set_state(_from_numpy_state(state["numpy"]))
        python = state["python"]
        random.setstate((python["version"], tuple(int(v) for v in python["internal"]), python["gauss"]))
        for generator, saved in zip(self.generators, saved_generators):
            generator.set_state(_from_numpy_state(saved))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
