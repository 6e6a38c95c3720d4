"""Piecewise-constant schedules written as flat strings, indexed by epoch.

A schedule string is ``"epoch:value,epoch:value,..."`` with strictly increasing epochs starting
at 0, e.g. the LeNet-300-100 learning rate of the DSR paper ``"0:0.1,25:0.02,50:0.004,75:0.0008"``
(LR 0.1 divided by 5 at epochs 25, 50, 75). Strings keep every config field a flat scalar, so a
papermill parameter cell can override a whole schedule with one value.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from dsr.errors import ScheduleError


@dataclass(frozen=True)
class Schedule:
    """A piecewise-constant function of the epoch."""

    epochs: tuple[float, ...]  # whole epochs, or fractions (a boundary inside an epoch)
    values: tuple[float, ...]

    @classmethod
    def parse(cls, text: str, name: str = "schedule") -> Schedule:
        """Parse ``"0:0.1,25:0.02"``; raise ScheduleError naming ``name`` when malformed."""
        if not isinstance(text, str) or not text.strip():
            raise ScheduleError(f"{name}: expected 'epoch:value,...', got {text!r}")
        epochs, values = [], []
        for part in text.split(","):
            try:
                e, v = part.split(":")
                epochs.append(int(e) if e.strip().lstrip("-").isdigit() else float(e))
                values.append(float(v))
            except ValueError:
                raise ScheduleError(f"{name}: cannot read {part!r} in {text!r}") from None
        if epochs[0] != 0 or any(b <= a for a, b in zip(epochs, epochs[1:])):
            raise ScheduleError(f"{name}: epochs must start at 0 and increase, got {text!r}")
        return cls(tuple(epochs), tuple(values))

    def __call__(self, epoch: float) -> float:
        return self.values[bisect_right(self.epochs, epoch) - 1]

    @property
    def within_epochs(self) -> bool:
        """Whether a boundary falls inside an epoch (then the value changes between steps)."""
        return any(not float(e).is_integer() for e in self.epochs)

    def scaled(self, epoch_factor: float = 1.0, value_factor: float = 1.0) -> Schedule:
        """The same shape on a shorter or longer run: boundaries times ``epoch_factor``."""
        epochs = [0] + [max(1, round(e * epoch_factor)) for e in self.epochs[1:]]
        keep = [i for i in range(len(epochs)) if i == 0 or epochs[i] > epochs[i - 1]]
        return Schedule(
            tuple(epochs[i] for i in keep), tuple(self.values[i] * value_factor for i in keep)
        )

    def scaled_exactly(self, epoch_factor: float) -> Schedule:
        """The same shape on a shorter run with boundaries times ``epoch_factor``, not rounded
        to whole epochs (to 6 decimals): for a run too short for whole-epoch boundaries."""
        epochs = [0] + [round(e * epoch_factor, 6) for e in self.epochs[1:]]
        epochs = [int(e) if float(e).is_integer() else e for e in epochs]
        return Schedule(tuple(epochs), self.values)

    def format(self) -> str:
        return ",".join(f"{e}:{_fmt(v)}" for e, v in zip(self.epochs, self.values))


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) >= 1 else repr(float(v))
