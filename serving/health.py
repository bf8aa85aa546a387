"""Health state shared by the supervisor and its workers: serving, starting or stopping."""
import ctypes
import mmap
import threading
from typing import Any, TypeVar

import cherrypy
from cherrypy.process.wspbus import states

# What shared() makes: a ctypes number (c_byte) or an array of them.
_Number = TypeVar('_Number', bound='ctypes._SimpleCData[Any]')
_Array = TypeVar('_Array', bound='ctypes.Array[Any]')


def shared(ctype: type[_Number] | type[_Array]) -> _Number | _Array:
    """Return a `ctype` instance in memory that forked workers share with this process.

    An anonymous mapping, not a file: multiprocessing's RawValue makes one in /dev/shm, and
    a runtime that mounts /dev/shm read-only would stop the server at import.
    """
    return ctype.from_buffer(mmap.mmap(-1, ctypes.sizeof(ctype)))


# Set on SIGTERM when draining; shared with worker processes (read without a lock).
draining = shared(ctypes.c_byte)


# Set by the supervisor when it stops: a worker forked just then can miss the signal itself
# (Python drops signals that arrive while a fork's child is being set up), never this.
stopping = shared(ctypes.c_byte)


started = threading.Event()


def status() -> str:
    """Return 'serving', 'starting' (not yet serving) or 'stopping' (draining or stopped)."""
    if draining.value:
        return 'stopping'
    state = cherrypy.engine.state
    if state == states.STARTED:
        return 'serving'
    return 'stopping' if started.is_set() else 'starting'


cherrypy.engine.subscribe('start', started.set, priority=90)
