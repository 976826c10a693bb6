"""How many CPU threads a generated call takes: the cores other work leaves free.

The blocked code runs many short operations, each a parallel region that ends when
its slowest thread does.  On a quiet machine two threads nearly halve the time; on a
busy one a thread the scheduler has taken away holds every region up, and many short
regions lose far more than a few long ones (bench/codegen.py --load measures both).
So a large call counts, just before it starts, the threads other processes have ready
to run (``/proc/loadavg`` less this process's own) and takes only the cores they
leave free, at least one, at most torch's setting.  A small call is not worth the
look (about 70 us): it keeps torch's setting.
"""

from __future__ import annotations

import contextlib
import os

# Below this many elements moved, a call keeps torch's thread count: the look at the
# scheduler costs more than a region could lose (bench/codegen.py's small tensors).
LOOK_ABOVE = 1 << 20


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def others_running() -> int | None:
    """Threads of other processes ready to run now, or None where Linux's /proc is not
    there to tell."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        tasks = os.listdir("/proc/self/task")
    except (OSError, ValueError, IndexError):
        return None
    own = 0
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        own += stat[stat.rindex(")") + 2:][:1] == "R"
    return max(running - own, 0)


def free_threads(wanted: int) -> int:
    """Of ``wanted`` threads, how many the cores other processes leave free allow.  The
    count is the smaller of this look's and the last one's: a task that wakes for a
    moment (seen once in 20 looks on a quiet machine here) does not cost a call half
    its threads; other work that lasts is seen twice."""
    busy = others_running()
    if busy is None:
        return wanted
    lasting = min(busy, _LAST[0])
    _LAST[0] = busy
    return max(1, min(wanted, cores() - lasting))


_LAST = [0]  # other processes' runnable threads at the last look


@contextlib.contextmanager
def threads_for(torch, elements: int):
    """Runs the body with as many intra-op threads as free cores allow, for a call that
    moves ``elements`` values; torch's setting is restored afterwards."""
    wanted = torch.get_num_threads()
    if elements < LOOK_ABOVE or wanted == 1 or _INSIDE[0]:  # small, or decided outside
        yield wanted
        return
    n = free_threads(wanted)
    _INSIDE[0] += 1
    if n != wanted:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        _INSIDE[0] -= 1
        if n != wanted:
            torch.set_num_threads(wanted)


_INSIDE = [0]  # a call inside a decided one (a multi-tensor run's) does not look again
