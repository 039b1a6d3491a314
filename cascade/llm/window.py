"""Sliding windows from the back of a candidate list, as listwise rerankers use them.

The last ``window`` candidates are ranked first; the window then moves ``stride`` places
toward the top and ranks again, so a relevant passage near the bottom can travel up to the
first window (Sun et al., "Is ChatGPT Good at Search?", 2023, RankGPT).

>>> windows(10, 4, 2)
[(6, 10), (4, 8), (2, 6), (0, 4)]
>>> slide(list("abcde"), 3, 2, lambda part: part[::-1])
['e', 'b', 'a', 'd', 'c']
"""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


def windows(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) of each window, back to front; the last one starts at 0."""
    if n <= window:
        return [(0, n)]
    out, end = [], n
    while True:
        start = max(0, end - window)
        out.append((start, end))
        if start == 0:
            return out
        end -= stride


def slide(items: list[T], window: int, stride: int, rank: Callable[[list[T]], list[T]]) -> list[T]:
    """``items`` reordered window by window; ``rank`` returns a permutation of the window it gets."""
    items = list(items)
    for start, end in windows(len(items), window, stride):
        items[start:end] = rank(items[start:end])
    return items
