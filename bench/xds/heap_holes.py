#!/usr/bin/env python3
"""Which allocation sites leave resident free space ("holes") between live blocks in the heap.

RSS is live heap plus the free chunks glibc cannot return: a page holding any live block stays
resident, and so does every free chunk on it. After a large xDS push those holes are made by
temporaries that were allocated between blocks that stay and freed later. This reads a trace
written by `heaptrack --raw` of a process that was killed with SIGKILL (so that what was live
stays recorded as live), rebuilds the free runs at the end of the trace in the heap with the
most live bytes (the xDS thread's malloc arena in ewgw), keeps the part of each run that cannot
be returned to the OS (the bytes not on a whole free page), and charges it to the sites of the
allocations last freed there, by the innermost two ewgw frames.

  bench/xds/heap_holes.py TRACE.raw.zst EWGW_BINARY [CLUSTERS]

bench/xds/gateway_memory.sh --trace DIR writes such a trace of its large run. Approximate by
construction (a free run is charged to every freed block inside it in proportion to its size),
but it points at the temporaries to look at. Needs heaptrack, zstd and binutils (addr2line).
"""
import bisect
import collections
import subprocess
import sys

HEAP_REGION_SHIFT = 26  # glibc's non-main arenas live in 64 MiB-aligned heaps
PAGE = 4096
CHUNK_HEADER = 16       # size field plus alignment slack between neighbouring chunks


def read_trace(path):
    live, last_freed, traces, modules = {}, {}, [(0, 0)], []
    with subprocess.Popen(['zstdcat', path], stdout=subprocess.PIPE, text=True, bufsize=1 << 20) as p:
        for line in p.stdout:
            c = line[0]
            if c == '+':  # + size trace pointer
                _, size, trace, ptr = line.split()
                ptr = int(ptr, 16)
                live[ptr] = (int(size, 16), int(trace, 16))
                last_freed.pop(ptr, None)
            elif c == '-':  # - pointer
                ptr = int(line[2:], 16)
                block = live.pop(ptr, None)
                if block:
                    last_freed[ptr] = block
            elif c == 't':  # t instruction_pointer parent_trace
                _, ip, parent = line.split()
                traces.append((int(ip, 16), int(parent, 16)))
            elif c == 'm':  # m name_length name base ...
                f = line.split()
                if len(f) > 3 and f[2] != '-':
                    modules.append((int(f[3], 16), f[2]))
    return live, last_freed, traces, sorted(modules)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    trace_path, binary = sys.argv[1], sys.argv[2]
    clusters = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    live, last_freed, traces, modules = read_trace(trace_path)
    modules = [(base, binary if name == 'x' else name) for base, name in modules]
    bases = [base for base, _ in modules]

    by_region = collections.Counter()
    for ptr, (size, _) in live.items():
        by_region[ptr >> HEAP_REGION_SHIFT] += size
    region = by_region.most_common(1)[0][0]
    starts = sorted(live)
    top = max(ptr + live[ptr][0] for ptr in live if ptr >> HEAP_REGION_SHIFT == region)

    def overlaps_live(ptr, size):
        i = bisect.bisect_left(starts, ptr)
        if i < len(starts) and starts[i] < ptr + size:
            return True
        return i > 0 and starts[i - 1] + live[starts[i - 1]][0] > ptr

    # Free runs: freed blocks of the region below its top that no live block overlaps, merged.
    freed = sorted((ptr - CHUNK_HEADER, ptr + size + CHUNK_HEADER, size, trace)
                   for ptr, (size, trace) in last_freed.items()
                   if ptr >> HEAP_REGION_SHIFT == region and ptr < top and not overlaps_live(ptr, size))
    runs = []
    for begin, end, size, trace in freed:
        if runs and begin <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], end)
            runs[-1][2].append((size, trace))
        else:
            runs.append([begin, end, [(size, trace)]])

    def chain(trace):
        ips = []
        while trace:
            ip, trace = traces[trace]
            ips.append(ip)
        return ips[:25]

    charged = []
    resident_total = 0
    for begin, end, members in runs:
        i = bisect.bisect_left(starts, begin)
        low = max(begin, starts[i - 1] + live[starts[i - 1]][0]) if i > 0 else begin
        j = bisect.bisect_left(starts, begin + CHUNK_HEADER)
        high = min(end, starts[j]) if j < len(starts) else end
        whole_pages = max(0, high // PAGE - (low + PAGE - 1) // PAGE)
        resident = max(0, high - low) - whole_pages * PAGE
        if resident <= 0:
            continue
        resident_total += resident
        total = sum(size for size, _ in members)
        charged += [(resident * size / total, chain(trace)) for size, trace in members]

    wanted = collections.defaultdict(list)
    for _, ips in charged:
        for ip in ips:
            k = bisect.bisect_right(bases, ip) - 1
            if k >= 0:
                wanted[modules[k][1]].append((ip, ip - modules[k][0]))
    symbol = {}
    for path, items in wanted.items():
        items = list(dict(items).items())
        out = subprocess.run(['addr2line', '-f', '-C', '-e', path] + [hex(off) for _, off in items],
                             capture_output=True, text=True).stdout.split('\n')
        for n, (ip, _) in enumerate(items):
            symbol[ip] = out[2 * n] if 2 * n < len(out) else '?'

    by_site = collections.Counter()
    for share, ips in charged:
        names = [symbol.get(ip, '?') for ip in ips]
        ours = [n.split('(')[0] for n in names if 'ewgw::' in n][:2]
        by_site[' <- '.join(ours) if ours else 'outside ewgw: ' + names[min(3, len(names) - 1)][:80]] += share
    print('resident free space between live blocks: %d bytes, %.1f per cluster (%d runs)'
          % (resident_total, resident_total / clusters, len(runs)))
    for site, share in by_site.most_common(25):
        print('%7.1f  %s' % (share / clusters, site))


if __name__ == '__main__':
    main()
