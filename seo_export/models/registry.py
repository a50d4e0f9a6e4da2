"""A name -> builder registry: adding a kind is one ``register`` call."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str):
        self.what = what
        self._builders: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(builder: Callable[..., T]) -> Callable[..., T]:
            if name in self._builders:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self._builders[name] = builder
            return builder

        return add

    def names(self) -> tuple[str, ...]:
        return tuple(self._builders)

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._builders:
            raise ValueError(f"unknown {self.what} {name!r}; valid: {', '.join(self._builders)}")
        return self._builders[name]

    def create(self, name: str, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)
