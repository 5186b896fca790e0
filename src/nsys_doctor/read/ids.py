"""nsys's thread and process ids, as the model sees them (model.trace.Ids): a globalTid is the process's globalPid
with the OS thread id in its low 24 bits, and a globalPid holds the OS process id from bit 24 up. The Kineto reader
builds its own ids in the same layout (a process number from bit 24, a thread number below), so both readers hand
the model these functions; no code outside read/ knows the layout.
"""
from __future__ import annotations

import numpy as np

from ..model.trace import Ids

LOW_BITS = 24                  # the OS thread id (globalTid) or nothing (globalPid) below bit 24
LOW_MASK = (1 << LOW_BITS) - 1
PROCESS_KEY_MASK = 0x7FFFFFFF  # 31 bits of the process number: its key sits above a 32-bit correlation id in int64


def _process_of(tid):
    return (np.asarray(tid, np.int64) >> LOW_BITS) << LOW_BITS


def _process_key(pid):
    key = np.asarray(pid) >> LOW_BITS
    if key.dtype != np.int64:
        key = key.astype(np.int64)
    key &= PROCESS_KEY_MASK
    return key


NSYS_IDS = Ids(process_of=_process_of, process_key=_process_key,
               os_tid=lambda tid: int(tid) & LOW_MASK, os_pid=lambda pid: (int(pid) >> LOW_BITS) & LOW_MASK)
