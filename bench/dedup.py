#!/usr/bin/env python3
"""Chunked entries against archive entries, side by side on the local store.

Usage: python3 bench/dedup.py [--scale F] [--runs N] [--datasets a,b] [--work DIR] [--kura BIN] [--evolve N]
                              [--chunk-sizes 16K,...] [--big GB]

For each dataset (bench.py's generators; node_modules, cargo):
  cold     archive save vs chunked save into an empty store (time; bytes stored)
  restore  archive restore vs chunked restore into an empty directory
  warm     after a chunked save (and a restore, which records the base), the tree changes and
           a chunked save runs again; bytes uploaded and time against the cold archive save:
             pct1    1 % of the files rewritten
             bump    one package (node_modules) or crate (cargo) rewritten
             front   a file inserted at the front of the stream
  sizes    per average chunk size (--chunk-sizes): bytes stored, manifest size, and the share of
           a cold save uploaded again after pct1 and after bump
  evolve   N saves, each after a 1 % change, keeping the newest 3 entries and pruning (packs
           backdated past the 24 h grace): store bytes against the live bytes
  big      (--big GB) a save and a restore of a generated tree that large, both formats: peak RSS
Medians of --runs; peak RSS from GNU time.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402


def kura(args, store, cwd, extra=""):
    env = dict(os.environ, KURA_STORE=f"file://{store}", TMPDIR=os.path.join(ARGS.work, "tmp"))
    os.makedirs(env["TMPDIR"], exist_ok=True)
    cmd = f"{ARGS.kura} --json {args} {extra} > {ARGS.work}/.out"
    took, rss = bench.timed(cmd, cwd=cwd, env=env)
    with open(f"{ARGS.work}/.out") as f:
        return took, rss, json.loads(f.read().strip().splitlines()[-1])


def store_bytes(store):
    return bench.du(store)[0]


def change(tree, rng, what, name):
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(tree) for f in fs)
    if what == "pct1":
        for p in rng.sample(files, max(1, len(files) // 100)):
            size = os.path.getsize(p)
            bench.write(p, bench.gen_text(rng, max(size, 1)))
    elif what == "bump":
        unit = "/pkg7/" if name == "node_modules" else "/crate-7-"
        for p in [f for f in files if unit in f]:
            bench.write(p, bench.gen_text(rng, max(os.path.getsize(p), 1)))
    elif what == "front":
        top = sorted(os.listdir(tree))[0]
        bench.write(os.path.join(tree, top, "!000-inserted"), bench.gen_text(rng, 200 << 10))


def one(name):
    rng = random.Random(42)
    src = os.path.join(ARGS.work, "data", f"{name}-x{ARGS.scale:g}")
    if not os.path.exists(src):
        bench.DATASETS[name](src, ARGS.scale, rng)
    size, files = bench.du(src)
    top = " ".join(f"--path {t}" for t in sorted(os.listdir(src)))
    w = lambda *p: os.path.join(ARGS.work, "dd", *p)  # noqa: E731
    res = {}

    def fresh(*dirs):
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)

    for fmt in ["archive", "chunked"]:
        saves, restores = [], []
        for _ in range(ARGS.runs):
            fresh(w("store"), w("out"))
            t, rss_s, _ = kura(f"save --format {fmt} --key k {top}", w("store"), src)
            saves.append(t)
            os.makedirs(w("out"))
            t, rss_r, _ = kura(f"restore --key k {top}", w("store"), w("out"))
            restores.append(t)
        res[fmt] = (bench.median(saves), bench.median(restores), store_bytes(w("store")), rss_s, rss_r)
    a, c = res["archive"], res["chunked"]
    print(f"\n## {name}: {files} files, {size / 1e6:.0f} MB")
    print(f"{'':10} {'save s':>8} {'restore s':>10} {'stored MB':>10} {'RSS save':>9} {'RSS rest':>9}")
    for fmt, r in res.items():
        print(f"{fmt:10} {r[0]:8.2f} {r[1]:10.2f} {r[2] / 1e6:10.1f} {r[3]:8.0f}M {r[4]:8.0f}M")
    print(f"chunked / archive: cold save {c[0] / a[0]:.2f}x, restore {c[1] / a[1]:.2f}x "
          f"(targets <= 1.1x)")

    print(f"{'warm':10} {'uploaded MB':>12} {'of cold':>8} {'save s':>8} {'vs cold archive':>16}")
    for what in ["pct1", "bump", "front"]:
        ups, times = [], []
        for run in range(ARGS.runs):
            fresh(w("store"), w("tree"), w("tmp"))
            shutil.copytree(src, w("tree"), symlinks=True)
            kura(f"save --format chunked --key k0 {top}", w("store"), w("tree"))
            kura(f"restore --key k0 {top}", w("store"), w("tree"))
            change(w("tree"), random.Random(run), what, name)
            t, _, out = kura(f"save --format chunked --key k1 {top}", w("store"), w("tree"))
            ups.append(out["chunks"]["uploaded"])
            times.append(t)
        up, t = bench.median(ups), bench.median(times)
        print(f"{what:10} {up / 1e6:12.2f} {100 * up / a[2]:7.1f}% {t:8.2f} {t / a[0]:15.2f}x")

    if ARGS.chunk_sizes:
        print(f"{'chunk size':10} {'stored MB':>10} {'manifest KB':>12} {'pct1 upload':>12} {'bump upload':>12}")
        for cs in ARGS.chunk_sizes.split(","):
            row = []
            for what in ["pct1", "bump"]:
                fresh(w("store"), w("tree"), w("tmp"))
                shutil.copytree(src, w("tree"), symlinks=True)
                _, _, cold = kura(f"save --format chunked --chunk-size {cs} --key k0 {top}", w("store"), w("tree"))
                kura(f"restore --key k0 {top}", w("store"), w("tree"))
                change(w("tree"), random.Random(1), what, name)
                _, _, out = kura(f"save --format chunked --chunk-size {cs} --key k1 {top}", w("store"), w("tree"))
                if "chunks" not in out or "chunks" not in cold:
                    sys.exit(f"chunk size {cs}, {what}: {cold} then {out}")
                row.append((cold, out))
            cold = row[0][0]
            print(f"{cs:10} {cold['chunks']['uploaded'] / 1e6:10.1f} {cold['size'] / 1e3:12.1f} "
                  f"{100 * row[0][1]['chunks']['uploaded'] / cold['chunks']['uploaded']:11.1f}% "
                  f"{100 * row[1][1]['chunks']['uploaded'] / cold['chunks']['uploaded']:11.1f}%")

    if ARGS.evolve:
        fresh(w("store"), w("tree"), w("tmp"))
        shutil.copytree(src, w("tree"), symlinks=True)
        rng = random.Random(7)
        warm_up = []
        for i in range(ARGS.evolve):
            if i:
                change(w("tree"), rng, "pct1", name)
            _, _, saved = kura(f"save --format chunked --key e{i:03} {top}", w("store"), w("tree"))
            if i:
                warm_up.append(saved["chunks"]["uploaded"])
            if i >= 3:
                kura(f"rm e{i - 3:03}", w("store"), w("tree"))
            # Two days pass between saves: packs and prune's note of dead packs age.
            packs = os.path.join(w("store"), ".packs")
            for p in os.listdir(packs):
                st = os.stat(os.path.join(packs, p))
                os.utime(os.path.join(packs, p), (st.st_atime, st.st_mtime - 2 * 86400))
            note = os.path.join(packs, "dead.json")
            if os.path.exists(note):
                with open(note) as f:
                    dead = json.load(f)
                with open(note, "w") as f:
                    json.dump({k: v - 2 * 86400 * 1000 for k, v in dead.items()}, f)
            _, _, out = kura("prune --max-age 30d", w("store"), w("tree"))
        live = out["live_pack_bytes"]
        total = store_bytes(w("store"))
        # What the 3 live entries need: their trees saved afresh, one after another, into an
        # empty store (each deduplicated against the one before), and one cold save alone.
        fresh(w("cold"), w("live"))
        need, one = 0, 0
        for i in range(ARGS.evolve - 3, ARGS.evolve):
            os.makedirs(w("live", str(i)))
            kura(f"restore --key e{i:03} {top}", w("store"), w("live", str(i)))
            _, _, fresh_save = kura(f"save --format chunked --key c{i} {top}", w("cold"), w("live", str(i)))
            need += fresh_save["chunks"]["uploaded"]
            one = one or fresh_save["chunks"]["uploaded"]
        print(f"evolve: {ARGS.evolve} saves keeping 3: store {total / 1e6:.1f} MB (packs live "
              f"{live / 1e6:.1f} MB); the 3 live trees saved afresh {need / 1e6:.1f} MB: "
              f"store / live {total / need:.2f} (target <= 2); one tree alone {one / 1e6:.1f} MB; "
              f"warm saves uploaded {sum(warm_up) / len(warm_up) / 1e6:.2f} MB on average, "
              f"{max(warm_up) / 1e6:.2f} MB at most")


def big():
    """Peak RSS of a save and a restore of a --big GB tree, chunked and archive."""
    src = os.path.join(ARGS.work, "data", f"big-{ARGS.big:g}G")
    if not os.path.exists(src):
        rng = random.Random(5)
        pool = [bench.gen_text(rng, 1 << 20) for _ in range(8)]

        def text(n):
            # Slices of a pool of text, each after a line of its own.
            out = bytearray()
            while len(out) < n:
                p = rng.choice(pool)
                at = rng.randrange(len(p) // 2)
                out += b"// %d\n" % rng.getrandbits(48) + p[at:at + rng.randint(4 << 10, 256 << 10)]
            return bytes(out[:n])

        # Half text, half binary; files of 64 KiB to 16 MiB.
        left, i = int(ARGS.big * 1e9), 0
        while left > 0:
            n = min(left, int(rng.lognormvariate(13, 1.5)) + (64 << 10), 16 << 20)
            data = text(n) if i % 2 else bench.gen_binary(rng, n)
            bench.write(os.path.join(src, "big", f"d{i % 50}", f"f{i}"), data)
            left, i = left - n, i + 1
    size, files = bench.du(src)
    print(f"\n## big: {files} files, {size / 1e9:.2f} GB (target: peak RSS <= 200 MB both ways)")
    w = lambda *p: os.path.join(ARGS.work, "dd", *p)  # noqa: E731
    for fmt in ["chunked", "archive"]:
        shutil.rmtree(w("store"), ignore_errors=True)
        shutil.rmtree(w("out"), ignore_errors=True)
        ts, rs, _ = kura(f"save --format {fmt} --key big --path big", w("store"), src)
        os.makedirs(w("out"))
        tr, rr, _ = kura("restore --key big --path big", w("store"), w("out"))
        print(f"{fmt:10} save {ts:6.2f} s {rs:5.0f}M   restore {tr:6.2f} s {rr:5.0f}M")
    shutil.rmtree(w("out"), ignore_errors=True)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--datasets", default="node_modules,cargo")
    p.add_argument("--work", default=os.path.join(HERE, "work"))
    p.add_argument("--kura", default=os.path.join(HERE, "..", "target", "release", "kura"))
    p.add_argument("--evolve", type=int, default=30)
    p.add_argument("--chunk-sizes", default="16K,32K,64K,128K",
                   help="average chunk sizes to compare (stored bytes, manifest, reuse); empty: skip")
    p.add_argument("--big", type=float, default=0,
                   help="also save and restore a tree of this many GB, for peak RSS")
    ARGS = p.parse_args()
    bench.ARGS = ARGS
    for name in filter(None, ARGS.datasets.split(",")):
        one(name)
    if ARGS.big:
        big()


if __name__ == "__main__":
    main()
