#!/usr/bin/env python3
"""Replays a fuzz target's corpus: every input once, by name, in one process of the target.

Fails if the target fails on an input, if an input took more than --max-ms, or if the process
(all inputs together) peaked over --max-rss-mib of resident memory. libFuzzer's own RSS limit is
checked by a thread once a second, which a replay of small inputs can finish before, so the peak
is read here from the child's rusage instead.

    fuzz_replay.py <target binary> <corpus dir> [--max-ms 100] [--max-rss-mib 64]
"""
import argparse
import os
import re
import resource
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument("binary")
ap.add_argument("corpus")
ap.add_argument("--max-ms", type=int, default=100)
ap.add_argument("--max-rss-mib", type=int, default=64)
a = ap.parse_args()

files = sorted(os.path.join(a.corpus, f) for f in os.listdir(a.corpus))
run = subprocess.run([a.binary, "-timeout=1", *files], capture_output=True, text=True)
peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
times = [(int(m.group(2)), m.group(1)) for m in re.finditer(r"^Executed (.*) in (\d+) ms$", run.stderr, re.M)]
slowest = max(times, default=(0, "-"))
print(f"replayed {len(times)} of {len(files)} inputs: slowest {slowest[0]} ms, peak RSS {peak_mib:.0f} MiB")
failed = []
if run.returncode != 0 or len(times) != len(files):
    failed.append(f"the target failed (exit {run.returncode}):\n" + run.stderr[-4000:])
if slowest[0] > a.max_ms:
    failed.append(f"{slowest[1]} took {slowest[0]} ms, over {a.max_ms} ms")
if peak_mib > a.max_rss_mib:
    failed.append(f"peak RSS {peak_mib:.0f} MiB, over {a.max_rss_mib} MiB")
for f in failed:
    print(f, file=sys.stderr)
sys.exit(1 if failed else 0)
