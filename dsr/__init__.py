"""dsr: Dynamic Sparse Reparameterization (Mostafa & Wang, ICML 2019) in PyTorch.

Use in your own training loop::

    import dsr
    method = dsr.sparsify(model, "dsr", sparsity=0.9, steps_per_epoch=len(loader))
    for x, y in loader:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        method.before_step()
        optimizer.step()
        method.after_step()

Or run a configured experiment: ``dsr.run(dsr.preset("lenet300-mnist", "paper"))``.
"""

from typing import TYPE_CHECKING

from dsr.config import RunConfig, preset

if TYPE_CHECKING:
    from dsr.methods import METHODS, Method, sparsify

__version__ = "0.1.0"
__all__ = ["METHODS", "Method", "RunConfig", "preset", "run", "sparsify"]
_FROM_METHODS = ("METHODS", "Method", "sparsify")


def __getattr__(name: str):
    """The method registry loads on first use, so that importing the configs (and
    ``python -m dsr --help``) does not import torch."""
    if name in _FROM_METHODS:
        from dsr import methods

        return getattr(methods, name)
    raise AttributeError(f"module 'dsr' has no attribute {name!r}")


def run(cfg: RunConfig, **kwargs):
    """Train ``cfg`` (or return its cached result): see :func:`dsr.runs.run`."""
    from dsr.runs import run as _run

    return _run(cfg, **kwargs)
