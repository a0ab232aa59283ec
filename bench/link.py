#!/usr/bin/env python3
"""Chunked against archive entries over a CI-like link: a single-node Garage (S3) behind a
proxy that limits the bandwidth each way and adds a round-trip delay (this kernel has no
netem), so that what a save uploads and a restore downloads costs what it would in CI.

Usage: python3 bench/link.py [--rate 50] [--rtt-ms 2] [--scale F] [--runs N]
                             [--datasets node_modules,cargo] [--work DIR] [--kura BIN]

For each dataset (bench.py's generators), wall time through the link, medians of --runs:
  cold     archive save vs chunked save into an empty prefix, and both restores
  warm     a chunked save after a restore of the base and a change (pct1: 1 % of the files
           rewritten; bump: one package or crate rewritten), against the cold archive save
Each save and restore runs on a prefix of its own; the bytes are what kura's --json says.
"""

import argparse
import json
import os
import random
import shutil
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402
import dedup  # noqa: E402  (the tree changes)


class Bucket:
    """One direction of the link: bytes leave at `rate` bytes a second, whichever connection
    sends them, as on a runner's one network interface."""

    def __init__(self, rate):
        self.rate = rate
        self.lock = threading.Lock()
        self.free_at = time.monotonic()

    def take(self, n):
        with self.lock:
            now = time.monotonic()
            self.free_at = max(self.free_at, now) + n / self.rate
            wait = self.free_at - now
        if wait > 0:
            time.sleep(wait)


def proxy(upstream, rate, rtt):
    """Listen on 127.0.0.1; forward every connection to `upstream` (host, port) through the
    link. A piece that follows a pause (a new request or reply) waits half the round trip."""
    up, down = Bucket(rate), Bucket(rate)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)

    def pump(src, dst, bucket):
        last = 0.0
        try:
            while True:
                data = src.recv(256 << 10)
                if not data:
                    break
                now = time.monotonic()
                if now - last > rtt:
                    time.sleep(rtt / 2)
                bucket.take(len(data))
                dst.sendall(data)
                last = time.monotonic()
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def serve():
        while True:
            c, _ = listener.accept()
            u = socket.create_connection(upstream)
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=pump, args=(c, u, up), daemon=True).start()
            threading.Thread(target=pump, args=(u, c, down), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


PREFIX = [0]


def prefix():
    """A prefix no earlier save used: every save here is cold unless it is meant to be warm."""
    PREFIX[0] += 1
    return f"s3://kura-bench/link-{os.getpid()}-{PREFIX[0]}"


def kura(args, store, cwd):
    env = dict(os.environ, KURA_STORE=store, KURA_S3_ENDPOINT=ENDPOINT,
               AWS_ACCESS_KEY_ID=bench.GARAGE_KEY[0], AWS_SECRET_ACCESS_KEY=bench.GARAGE_KEY[1],
               AWS_REGION="garage", KURA_PROGRESS_SECONDS="0",
               TMPDIR=os.path.join(ARGS.work, "tmp"))
    os.makedirs(env["TMPDIR"], exist_ok=True)
    out = os.path.join(ARGS.work, ".out")
    took, _ = bench.timed(f"{ARGS.kura} --json {args} > {out}", cwd=cwd, env=env)
    with open(out) as f:
        return took, json.loads(f.read().strip().splitlines()[-1])


def one(name):
    src = os.path.join(ARGS.work, "data", f"{name}-x{ARGS.scale:g}")
    if not os.path.exists(src):
        bench.DATASETS[name](src, ARGS.scale, random.Random(42))
    size, files = bench.du(src)
    top = " ".join(f"--path {t}" for t in sorted(os.listdir(src)))
    w = lambda *p: os.path.join(ARGS.work, "ln", *p)  # noqa: E731
    cold = {}
    for fmt in ["archive", "chunked"]:
        saves, restores, stored = [], [], 0
        for _ in range(ARGS.runs):
            store = prefix()
            shutil.rmtree(w("out"), ignore_errors=True)
            os.makedirs(w("out"))
            t, out = kura(f"save --format {fmt} --key k {top}", store, src)
            saves.append(t)
            stored = out["size"]  # the entry in the store: the archive, or manifest and frames
            t, out = kura(f"restore --key k {top}", store, w("out"))
            if out["outcome"] != "hit":
                sys.exit(f"{name} {fmt}: restore {out}")
            restores.append(t)
        cold[fmt] = (bench.median(saves), bench.median(restores), stored)
    a, c = cold["archive"], cold["chunked"]
    print(f"\n## {name}: {files} files, {size / 1e6:.0f} MB, link {ARGS.rate:g} MB/s each way, "
          f"RTT {ARGS.rtt_ms:g} ms")
    print(f"{'cold':10} {'save s':>8} {'restore s':>10} {'stored MB':>10}")
    for fmt, r in cold.items():
        print(f"{fmt:10} {r[0]:8.2f} {r[1]:10.2f} {r[2] / 1e6:10.1f}")
    print(f"chunked / archive: save {c[0] / a[0]:.2f}x, restore {c[1] / a[1]:.2f}x, stored {c[2] / a[2]:.2f}x")
    print(f"{'warm':10} {'uploaded MB':>12} {'save s':>8} {'vs cold archive save':>21}")
    for what in ["pct1", "bump"]:
        ups, times = [], []
        for run in range(ARGS.runs):
            store = prefix()
            shutil.rmtree(w("tree"), ignore_errors=True)
            shutil.copytree(src, w("tree"), symlinks=True)
            kura(f"save --format chunked --key k0 {top}", store, w("tree"))
            kura(f"restore --key k0 {top}", store, w("tree"))
            dedup.change(w("tree"), random.Random(run), what, name)
            t, out = kura(f"save --format chunked --key k1 {top}", store, w("tree"))
            ups.append(out["chunks"]["uploaded"])
            times.append(t)
        t = bench.median(times)
        print(f"{what:10} {bench.median(ups) / 1e6:12.2f} {t:8.2f} {t / a[0]:20.2f}x")


def main():
    global ARGS, ENDPOINT
    p = argparse.ArgumentParser()
    p.add_argument("--rate", type=float, default=50.0, help="MB/s each way (default 50)")
    p.add_argument("--rtt-ms", type=float, default=2.0)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--datasets", default="node_modules,cargo")
    p.add_argument("--work", default=os.path.join(HERE, "work"))
    p.add_argument("--kura", default=os.path.join(HERE, "..", "target", "release", "kura"))
    ARGS = p.parse_args()
    ARGS.work = os.path.abspath(ARGS.work)
    ARGS.kura = os.path.abspath(ARGS.kura)
    bench.ARGS = ARGS
    dedup.ARGS = ARGS
    os.makedirs(ARGS.work, exist_ok=True)
    garage, direct = bench.start_garage(ARGS.work)
    try:
        host, port = direct.rsplit("/", 1)[1].split(":")
        port = proxy((host, int(port)), ARGS.rate * 1e6, ARGS.rtt_ms / 1e3)
        ENDPOINT = f"http://127.0.0.1:{port}"
        print(f"kura over a {ARGS.rate:g} MB/s link ({os.cpu_count()} cpus, runs={ARGS.runs}, "
              f"scale={ARGS.scale}), Garage through a throttling proxy")
        for name in ARGS.datasets.split(","):
            one(name)
    finally:
        garage.kill()


if __name__ == "__main__":
    main()
