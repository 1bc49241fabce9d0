#!/usr/bin/python3
"""Off-CPU time of one process's threads, from `perf script` of a
system-wide `perf record -a -g -e sched:sched_switch`: for each time a
thread of the process is switched out, the time until it is switched in
again, summed by what it blocked in (the first user-space frame: the libc
call) and by thread. Threads waiting for work are off-CPU all the time;
what matters is the time in calls that a request waits for (fdatasync,
a lock). The process must still run (its threads are read from /proc).
usage: perf record -a -g -e sched:sched_switch -- sleep 4
       perf script | tests/bench/offcpu.py PID"""
import collections, os, re, sys
pid = sys.argv[1]
tids = set(os.listdir('/proc/%s/task' % pid)) if os.path.isdir('/proc/%s/task' % pid) else set()
tids |= set(sys.argv[2:])
head = re.compile(r'^\s*(\S+)\s+(\d+)\s+\[\d+\]\s+([\d.]+):\s+sched:sched_switch:\s+(.*)$')
events, cur = [], None
for line in sys.stdin:
    m = head.match(line)
    if m:
        if cur: events.append(cur)
        comm, tid, t, rest = m.groups()
        nm = re.search(r'next_pid=(\d+)', rest)
        cur = [tid, float(t), nm.group(1) if nm else None, []]
    elif cur is not None and line.strip():
        f = line.strip().split(None, 1)
        if len(f) == 2 and '[kernel.kallsyms]' not in f[1]:
            cur[3].append(re.sub(r'\+0x[0-9a-f]+', '', f[1].split(' (')[0]))
if cur: events.append(cur)
out_at, by_call, by_tid = {}, collections.Counter(), collections.Counter()
for tid, t, nxt, stack in events:
    if nxt in out_at:
        t0, what, who = out_at.pop(nxt)
        by_call[what] += t - t0
        by_tid[(who, what)] += t - t0
    if tid in tids:
        out_at[tid] = (t, stack[0] if stack else '?', tid)
span = events[-1][1] - events[0][1]
print('window %.2f s, %d threads seen' % (span, len({k[0] for k in by_tid})))
for what, v in by_call.most_common(12):
    print('%7.3f s  %s' % (v, what))
print('by thread (tid, blocked in): seconds off-CPU')
for (who, what), v in by_tid.most_common(14):
    print('  %s %-28s %.3f' % (who, what, v))
