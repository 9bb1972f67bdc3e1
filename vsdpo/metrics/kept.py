"""A bounded store of results the metrics compute again and again: a task's reference is scored
against every rollout of it, and its trace or its page's blocks are the same each time."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class KeptResults(Generic[T]):
    """The results of the last ``size`` keys used (the least recently used dropped first). A
    computation that raises keeps nothing; two threads that miss the same key both compute it."""

    def __init__(self, size: int):
        self.size = size
        self._results: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        result = compute()
        with self._lock:
            self._results[key] = result
            while len(self._results) > self.size:
                self._results.popitem(last=False)
        return result

    def clear(self) -> None:
        with self._lock:
            self._results.clear()

    def __len__(self) -> int:
        return len(self._results)
