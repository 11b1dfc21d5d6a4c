#!/usr/bin/env python3
"""The seed's way of starting actors, timed: Python's multiprocessing with fork.

ktz.multiprocessing runs each actor in a multiprocessing.Process (fork start
method) and connects stages with multiprocessing queues. This starts 16 such
processes, passes one message through them (queue to queue, as Source -> 14
workers -> Sink do in relay's figure), joins them, and prints the median wall
time in ms over RUNS runs as one number on stdout. bench/bench.cc runs it for
its start-up baseline; it can also be run by hand: python3 bench/python_startup.py 10
"""
import multiprocessing as mp
import statistics
import sys
import time


def forward(inbox, outbox):
    item = inbox.get()
    if outbox is not None:
        outbox.put(item)


def one_run(processes=16):
    ctx = mp.get_context("fork")
    queues = [ctx.Queue() for _ in range(processes)]
    actors = [
        ctx.Process(target=forward, args=(queues[i], queues[i + 1] if i + 1 < processes else None))
        for i in range(processes)
    ]
    t0 = time.perf_counter()
    for a in actors:
        a.start()
    queues[0].put(b"x" * 16)
    for a in actors:
        a.join()
    elapsed = time.perf_counter() - t0
    for a in actors:
        if a.exitcode != 0:
            sys.exit(f"python_startup: a process exited with {a.exitcode}")
    return elapsed * 1e3


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print(f"{statistics.median(one_run() for _ in range(runs)):.2f}")


if __name__ == "__main__":
    main()
