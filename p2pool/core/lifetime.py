# -*- test-case-name: tests.test_lifetime -*-
"""
References that do not keep a pool alive: the pool's parts point back to it
weakly, so a stopped pool that its application drops is freed at once by
reference counting, without waiting for the cyclic garbage collector.

Exceptions are the other source of cycles: an exception keeps the frames it
went through (its traceback), and they keep their locals. An error kept as a
value (a connection's reason) whose traceback holds a frame of the object
that keeps it is a cycle, and everything else those frames hold stays with
it until a full collection: when a refused dial's error was also raised into
the maintenance that dialed, that was the maintenance, with the ACL (its
greylist filter is 4 MiB) and the tables. From Python 3.12 an error raised
into a coroutine is a cycle even when nothing keeps it: the coroutine's
frame, in its traceback, keeps through C{f_back} the frames that threw it in
even once it has finished, and Twisted's hold the Failure that holds the
error. Errors kept are stripped of their traceback (L{without_traceback});
the maintenance takes a failed dial and a cancelled pause as values
(L{value_on}), so the error does not gain its frame.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.python.failure import Failure

__all__ = ["owner_alive", "value_on", "weak_method", "weak_owner", "without_traceback"]

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


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


def without_traceback(error: E) -> E:
    """
    C{error}, its traceback dropped, for keeping as a value: the frames it
    went through, and all their locals, are not kept with it.
    """
    return error.with_traceback(None)


def value_on(value: T, *errors: type[BaseException]) -> Callable[[Failure], T]:
    """
    An errback that turns a failure of one of C{errors} into C{value} (any
    other failure goes on): a coroutine that awaits the Deferred gets a
    value, not an exception raised through its frame, which would tie the
    frame to the Failure in a cycle only the cyclic collector frees.
    """

    def errback(failure: Failure) -> T:
        failure.trap(*errors)
        return value

    return errback
