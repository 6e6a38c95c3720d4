"""What the reallocation log's events say, whichever method wrote them.

Every method logs, per mask update, the step and epoch, ``pruned_per_tensor`` and the active
count of each tensor after the update (``active``); DSR, SET and SNFS also log
``grown_per_tensor``. These helpers read the rest from that.
"""

from __future__ import annotations


def grown_per_tensor(event: dict) -> list[int]:
    """The weights each tensor regrew in one logged reallocation: logged by DSR, SET and SNFS;
    none where nothing grew (pruning); else (RigL, DeepR) as many as it pruned, since those
    methods keep every tensor's count (their logged ``active`` never changes)."""
    if "grown_per_tensor" in event:
        return list(event["grown_per_tensor"])
    if event.get("grown", 0) == 0:
        return [0] * len(event["pruned_per_tensor"])
    return list(event["pruned_per_tensor"])


def active_before(event: dict) -> list[int]:
    """Each tensor's active count just before a logged update: after it, less what it grew,
    plus what it pruned."""
    grown = grown_per_tensor(event)
    return [a + p - g for a, p, g in zip(event["active"], event["pruned_per_tensor"], grown)]
