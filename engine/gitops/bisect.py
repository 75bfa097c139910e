"""Finding the first breaking branch of a failed candidate chain.

A chain c_0 (green, known good) .. c_n (known bad) is searched for the smallest k
with c_k failing: ceil(log2 n) verifications. The largest passing prefix found on
the way can be promoted straight away; only the rest is rebuilt and verified again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable


async def first_failing_prefix(n: int, passes: Callable[[int], Awaitable[bool]]) -> tuple[int, int]:
    """Return ``(last_good, first_bad)`` prefix lengths, given prefix 0 passes and n fails.

    ``passes(k)`` verifies the candidate made of the first k branches.
    """
    if n < 1:
        raise ValueError("a failing chain has at least one branch")
    good, bad = 0, n
    while bad - good > 1:
        mid = (good + bad) // 2
        if await passes(mid):
            good = mid
        else:
            bad = mid
    return good, bad
