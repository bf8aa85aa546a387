"""Process and core readings through psutil: a whole process tree's CPU and memory."""
import psutil

MB = 2**20


def tree(pid):
    """Return psutil Processes for `pid` and every live descendant ([] once `pid` is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _total(procs, read):
    """Sum `read(proc)` over `procs`, skipping those gone; None if one may not be read."""
    total = 0
    for proc in procs:
        try:
            total += read(proc)
        except psutil.NoSuchProcess:
            pass
        except psutil.AccessDenied:       # another user's process, the driver not being root
            return None
    return total


def cpu_seconds(procs):
    """Return the CPU seconds `procs` used so far, counting each reaped child once."""
    # A worker that exited moves its time into its parent's children_* fields.
    return _total(procs, lambda proc: sum(proc.cpu_times()[:4]))


def memory_mb(procs):
    """Return (RSS, PSS) summed over `procs` in MB.

    Forked workers share pages, which the RSS sum counts once per process; the PSS sum
    splits each shared page between its sharers, so it is what the processes cost together.
    """
    rss = _total(procs, lambda proc: proc.memory_info().rss)
    pss = _total(procs, lambda proc: proc.memory_full_info().pss)
    return tuple(None if total is None else total / MB for total in (rss, pss))


def own_cpu_seconds():
    """Return the CPU seconds of this driver plus its reaped children (wrk) so far."""
    return sum(psutil.Process().cpu_times()[:4])


def core_times():
    """Return psutil's per-core CPU times, in seconds."""
    return psutil.cpu_times(percpu=True)


def core_deltas(before, after):
    """Return per-core lists (seconds processes ran, seconds stolen) between two core_times().

    Processes' time is user + nice + system: interrupt and softirq time is left out, since
    loopback traffic puts the server's own network work there.
    """
    pairs = list(zip(before, after, strict=True))
    ran = [(a.user + a.nice + a.system) - (b.user + b.nice + b.system) for b, a in pairs]
    return ran, [a.steal - b.steal for b, a in pairs]


def loadavg():
    """Return the 1, 5 and 15 minute load averages (a busy machine skews every figure)."""
    return [f'{value:.2f}' for value in psutil.getloadavg()]
