# -*- test-case-name: tests.test_lifetime -*-
"""
References that do not keep a pool alive: the pool's parts point back to it
weakly, so a stopped pool that its application drops is freed at once by
reference counting, without waiting for the cyclic garbage collector.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["owner_alive", "weak_method", "weak_owner"]

T = TypeVar("T")


def weak_owner(owner: T) -> T:
    """
    A proxy of C{owner} for a part it holds, that does not keep it alive.
    """
    if isinstance(owner, weakref.ProxyTypes):
        return owner
    # typeshed gives a proxy of a non-callable as Any; it stands for T.
    proxy: T = weakref.proxy(owner)
    return proxy


def owner_alive(proxy: object) -> bool:
    """
    Whether the owner behind a L{weak_owner} proxy still lives (a part can
    outlive its pool: a connection that closes after the pool was dropped).
    """
    if not isinstance(proxy, weakref.ProxyTypes):
        return True
    try:
        proxy.__class__  # noqa: B018  # a dead proxy raises on any use
    except ReferenceError:
        return False
    return True


def weak_method(method: Callable[..., Any]) -> Callable[..., Any]:
    """
    A function calling the bound C{method} while its object lives (and
    doing nothing after), for timers the object itself holds.
    """
    ref = weakref.WeakMethod(method)

    def call(*args: Any, **kw: Any) -> Any:
        bound = ref()
        return None if bound is None else bound(*args, **kw)

    call.__name__ = call.__qualname__ = getattr(method, "__qualname__", "weak_method")
    return call
