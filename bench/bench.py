#!/usr/bin/env python3
"""kura benchmark: save and restore against GNU tar + zstd and `cp -a`, side by side.

Usage: python3 bench/bench.py [--scale F] [--runs N] [--datasets a,b,c] [--work DIR] [--kura BIN] [--s3] [--http] [--oci] [--gha]

Datasets are generated (never committed) under --work:
  node_modules  many small JS-like files in deep trees
  cargo         a cargo-registry-like mix: sources of all sizes, some binaries
  binaries      a few big, partly compressible blobs
  big2g         ~2 GB mixed (only with --datasets big2g), for the peak-RSS target

--s3 also starts a single-node Garage on 127.0.0.1 (the `garage` binary on PATH or in
~/.cargo/bin) and times kura save/restore against it, reporting MB/s and the ratio to the
local store on the same dataset. --http does the same against nginx with WebDAV (Debian's
package), --oci against Debian's docker-registry.

--gha also starts Azurite and the GitHub cache stand-in of tests/support (npm, pinned, installed
under --work) and times kura against the official @actions/cache client, side by side on the
same data and the same service: the ratio is kura / @actions/cache (target ≤ 0.33).

Each step runs --runs times with a warm page cache; the median is reported. Peak RSS comes
from GNU time (%M). Ratios are kura / tar+zstd (lower is better) and kura / cp -a.
"""

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def gen_text(rng, n):
    words = [b"const", b"function", b"return", b"module", b"exports", b"require", b"let", b"=>",
             b"if", b"else", b"for", b"while", b"import", b"from", b"async", b"await", b"this",
             b"pub", b"fn", b"impl", b"struct", b"match", b"Some", b"None", b"Ok", b"Err"]
    out = bytearray()
    while len(out) < n:
        line = b" ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        out += line + b"_" + str(rng.randint(0, 99999)).encode() + b";\n"
    return bytes(out[:n])


def gen_binary(rng, n, compressible=0.5):
    out = bytearray()
    block = 64 << 10
    while len(out) < n:
        if rng.random() < compressible:
            out += bytes([rng.randint(0, 255)]) * 64 * (block // 64)
        else:
            out += rng.randbytes(block)
    return bytes(out[:n])


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make_node_modules(root, scale, rng):
    text_pool = [gen_text(rng, 64 << 10) for _ in range(8)]
    for p in range(int(1500 * scale)):
        pkg = os.path.join(root, "node_modules", f"pkg{p}")
        for f in range(rng.randint(5, 30)):
            size = int(rng.lognormvariate(7.2, 1.1))
            src = rng.choice(text_pool)
            off = rng.randint(0, len(src) - 1)
            data = (src[off:] + src)[: min(size, 60000)]
            write(os.path.join(pkg, ["lib", "dist", "src"][f % 3], f"f{f}.js"), data)
        write(os.path.join(pkg, "package.json"), b'{"name":"pkg%d","version":"1.0.%d"}\n' % (p, p))


def make_cargo(root, scale, rng):
    text_pool = [gen_text(rng, 256 << 10) for _ in range(8)]
    for c in range(int(300 * scale)):
        crate = os.path.join(root, "registry", "src", f"crate-{c}-0.{c % 7}.{c % 13}")
        for f in range(rng.randint(3, 40)):
            size = min(int(rng.lognormvariate(8.5, 1.4)), 1 << 20)
            src = rng.choice(text_pool)
            off = rng.randint(0, len(src) - 1)
            write(os.path.join(crate, "src", f"m{f}.rs"), (src[off:] + src)[:size])
        if c % 10 == 0:
            write(os.path.join(crate, "lib.rlib"), gen_binary(rng, int(rng.uniform(1, 6) * (1 << 20)), 0.6))


def make_binaries(root, scale, rng):
    for i in range(4):
        write(os.path.join(root, "bin", f"blob{i}.bin"), gen_binary(rng, int(64 * scale) << 20, 0.5))


def make_big(root, scale, rng):
    make_node_modules(os.path.join(root, "a"), 4 * scale, rng)
    make_cargo(os.path.join(root, "b"), 4 * scale, rng)
    for i in range(12):
        write(os.path.join(root, "c", f"blob{i}.bin"), gen_binary(rng, int(128 * scale) << 20, 0.5))


DATASETS = {
    "node_modules": make_node_modules,
    "cargo": make_cargo,
    "binaries": make_binaries,
    "big2g": make_big,
}


GARAGE_KEY = ("GK31c2f218a2e44f485b94239e",
              "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_garage(work):
    """A single-node Garage for the S3 figures; returns (process, endpoint)."""
    binary = shutil.which("garage") or os.path.expanduser("~/.cargo/bin/garage")
    if not os.path.exists(binary):
        sys.exit("--s3 needs garage: cargo install garage --version 2.5.0 --locked")
    d = os.path.join(work, "garage")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    rpc, s3, admin = free_port(), free_port(), free_port()
    cfg = os.path.join(d, "garage.toml")
    with open(cfg, "w") as f:
        f.write(f"""metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "4425f5c26c5e11581d3223904324dcb5b5d5dfb14e5e7d3a6f8d0b8e6f2a1c3d"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:{admin}"
""")
    log = open(os.path.join(d, "server.log"), "w")
    proc = subprocess.Popen([binary, "-c", cfg, "server"], stdout=log, stderr=log)
    g = lambda *a: subprocess.run([binary, "-c", cfg, *a], capture_output=True, text=True)
    node = None
    for _ in range(100):
        for line in g("status").stdout.splitlines():
            if f"127.0.0.1:{rpc}" in line:
                node = line.split()[0]
        if node:
            break
        time.sleep(0.1)
    if not node:
        proc.kill()
        sys.exit("garage did not start")
    for args in (["layout", "assign", "-z", "dc1", "-c", "10G", node], ["layout", "apply", "--version", "1"],
                 ["key", "import", "--yes", *GARAGE_KEY, "-n", "bench"], ["bucket", "create", "kura-bench"],
                 ["bucket", "allow", "--read", "--write", "--owner", "kura-bench", "--key", "bench"]):
        r = g(*args)
        if r.returncode != 0:
            proc.kill()
            sys.exit(f"garage {args}: {r.stderr}")
    return proc, f"http://127.0.0.1:{s3}"


NPM = {"@actions/cache": "6.3.0", "azurite": "3.35.0"}


def start_nginx(work):
    """nginx with WebDAV writes and JSON listings on 127.0.0.1 (Debian's package)."""
    if not shutil.which("nginx"):
        sys.exit("--http needs nginx: apt-get install nginx")
    d = os.path.join(work, "nginx")
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("root", "tmp"):
        os.makedirs(os.path.join(d, sub))
    port = free_port()
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(f"""daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{}}
http {{ client_body_temp_path {d}/tmp; access_log off;
  server {{ listen 127.0.0.1:{port}; root {d}/root; client_max_body_size 0;
    location / {{ dav_methods PUT DELETE; create_full_put_path on; autoindex on; autoindex_format json; }} }} }}
""")
    proc = subprocess.Popen(["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e", os.path.join(d, "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}/"


def start_registry(work):
    """Debian's docker-registry (distribution 2.8.2) on 127.0.0.1, deletes enabled."""
    if not shutil.which("docker-registry"):
        sys.exit("--oci needs docker-registry: apt-get install docker-registry")
    d = os.path.join(work, "registry")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "data"))
    port = free_port()
    with open(os.path.join(d, "config.yml"), "w") as f:
        f.write(f"version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {d}/data}}\n"
                f"  delete: {{enabled: true}}\nhttp: {{addr: 127.0.0.1:{port}, secret: bench}}\n")
    proc = subprocess.Popen(["docker-registry", "serve", os.path.join(d, "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, f"127.0.0.1:{port}"


def wait_port(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on 127.0.0.1:{port}")


def start_gha(work):
    """Azurite and the stand-in service; returns (processes, service URL, client script)."""
    npm = os.path.join(work, "npm")
    if not os.path.exists(os.path.join(npm, ".installed")):
        os.makedirs(npm, exist_ok=True)
        specs = [f"{k}@{v}" for k, v in NPM.items()]
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", npm] + specs,
                       check=True, stdout=subprocess.DEVNULL)
        open(os.path.join(npm, ".installed"), "w").write(" ".join(specs))
    support = os.path.join(HERE, "..", "tests", "support")
    for f in ("gha-standin.mjs", "actions-cache.mjs"):
        shutil.copy(os.path.join(support, f), npm)
    blob = free_port()
    azdir = os.path.join(work, "azurite")
    shutil.rmtree(azdir, ignore_errors=True)
    log = open(os.path.join(work, "gha.log"), "w")
    az = subprocess.Popen(["node", os.path.join(npm, "node_modules/azurite/dist/src/blob/main.js"),
                           "--location", azdir, "--blobHost", "127.0.0.1", "--blobPort", str(blob),
                           "--skipApiVersionCheck", "--disableTelemetry", "--silent"], stdout=log, stderr=log)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", blob), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    standin = subprocess.Popen(["node", os.path.join(npm, "gha-standin.mjs")], stdout=subprocess.PIPE, stderr=log,
                               env=dict(os.environ, AZURITE=f"http://127.0.0.1:{blob}"), text=True)
    line = standin.stdout.readline().strip()
    if not line.startswith("ready "):
        az.kill()
        sys.exit(f"the GitHub cache stand-in did not start ({line!r}); see {log.name}")
    return [az, standin], f"http://127.0.0.1:{line.split()[1]}", os.path.join(npm, "actions-cache.mjs")


def gha_env(base, workspace):
    temp = os.path.join(ARGS.work, "runner-temp")
    os.makedirs(temp, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KURA_", "GITHUB_", "ACTIONS_"))}
    return dict(env, ACTIONS_RESULTS_URL=GHA[1] + "/", ACTIONS_RUNTIME_TOKEN="bench", ACTIONS_CACHE_SERVICE_V2="true",
                GITHUB_ACTIONS="true", GITHUB_REF="refs/heads/main", GITHUB_WORKSPACE=workspace, RUNNER_TEMP=temp,
                **base)


def bench_gha(name, src_base, top, paths, size, files, res, rss, run):
    """kura and @actions/cache, each saving and restoring the same tree through the stand-in."""
    out = os.path.join(ARGS.work, "out", str(run))
    client = GHA[2]
    for who in ("kura", "official"):
        key = f"{name}-{who}-{run}-{time.time_ns()}"
        dest = os.path.join(out, f"gha-{who}-dest")
        os.makedirs(dest)
        if who == "kura":
            save = f"{ARGS.kura} save --key {key} {paths}"
            restore = f"{ARGS.kura} restore --key {key} {paths}"
        else:
            save = f"node {client} save {key} {' '.join(top)}"
            restore = f"node {client} restore {key} '' {' '.join(top)}"
        t, m = timed(save, cwd=src_base, env=gha_env({}, src_base))
        res[f"gha_{who}_save"].append(t); rss[f"gha_{who}_save"] = max(rss[f"gha_{who}_save"], m)
        t, m = timed(restore, cwd=dest, env=gha_env({}, dest))
        res[f"gha_{who}_restore"].append(t); rss[f"gha_{who}_restore"] = max(rss[f"gha_{who}_restore"], m)
        if du(dest) != (size, files):
            sys.exit(f"[{name}] {who} restored {du(dest)} through the GitHub stand-in, expected {(size, files)}")


def timed(cmd, cwd=None, env=None):
    """Run a shell command under GNU time; return (seconds, peak RSS in MB)."""
    subprocess.run("sync", shell=True)
    rss_file = os.path.join(ARGS.work, ".rss")
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file, "sh", "-c", cmd],
                       cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"command failed ({r.returncode}): {cmd}\n{r.stderr.decode()}")
    with open(rss_file) as f:
        rss = int(f.read().strip().splitlines()[-1]) / 1024
    return took, rss


def du(path):
    total = 0
    files = 0
    for d, _, fs in os.walk(path):
        for f in fs:
            total += os.lstat(os.path.join(d, f)).st_size
            files += 1
    return total, files


def median(xs):
    return statistics.median(xs)


def bench_dataset(name):
    rng = random.Random(42)
    src_base = os.path.join(ARGS.work, "data", f"{name}-x{ARGS.scale:g}")
    if not os.path.exists(src_base):
        print(f"[{name}] generating...", file=sys.stderr)
        DATASETS[name](src_base, ARGS.scale, rng)
    top = sorted(os.listdir(src_base))
    size, files = du(src_base)
    out = os.path.join(ARGS.work, "out")
    store = os.path.join(ARGS.work, "store")
    kura = ARGS.kura
    paths = " ".join(f"--path {t}" for t in top)
    env = dict(os.environ, KURA_STORE=f"file://{store}")
    res = {k: [] for k in ["tar_save", "kura_save", "tar_restore", "kura_restore", "cp", "s3_save", "s3_restore",
                           "gha_kura_save", "gha_kura_restore", "gha_official_save", "gha_official_restore"]}
    remotes = {}
    if ARGS.s3:
        remotes["s3"] = dict(os.environ, KURA_STORE=f"s3://kura-bench/{name}", KURA_S3_ENDPOINT=ENDPOINT,
                             AWS_ACCESS_KEY_ID=GARAGE_KEY[0], AWS_SECRET_ACCESS_KEY=GARAGE_KEY[1],
                             AWS_REGION="garage")
    if ARGS.http:
        remotes["http"] = dict(os.environ, KURA_STORE=f"{HTTP_URL}{name}/")
    if ARGS.oci:
        remotes["oci"] = dict(os.environ, KURA_STORE=f"oci://{OCI_ADDR}/bench/{name.replace('_', '-')}")
    for r in remotes:
        res[f"{r}_save"], res[f"{r}_restore"] = [], []
    rss = {k: 0.0 for k in res}
    sizes = {}
    for d in (out, store):
        shutil.rmtree(d, ignore_errors=True)
    for run in range(ARGS.runs):
        os.makedirs(os.path.join(out, str(run)))
        tzst = os.path.join(out, str(run), "cache.tzst")
        t, m = timed(f"tar --posix -cf - {' '.join(top)} | zstd -T0 -3 -q -o {tzst}", cwd=src_base)
        res["tar_save"].append(t); rss["tar_save"] = max(rss["tar_save"], m)
        sizes["tar"] = os.path.getsize(tzst)
        # A cold save every run (an empty store: no base to dedup against), and the entry's
        # size as the store holds it: its object and, for a chunked entry, its packs.
        shutil.rmtree(store, ignore_errors=True)
        t, m = timed(f"{kura} save --format {ARGS.format} --key bench-{run} {paths}", cwd=src_base, env=env)
        res["kura_save"].append(t); rss["kura_save"] = max(rss["kura_save"], m)
        sizes["kura"] = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(store)
                            for f in fs if not f.endswith(".json"))
        dest = os.path.join(out, str(run), "tar-dest")
        os.makedirs(dest)
        t, m = timed(f"zstd -dc {tzst} | tar -xf - -C {dest}")
        res["tar_restore"].append(t); rss["tar_restore"] = max(rss["tar_restore"], m)
        dest = os.path.join(out, str(run), "kura-dest")
        os.makedirs(dest)
        t, m = timed(f"{kura} --base-dir {dest} restore --key bench-{run} {paths}", cwd=src_base, env=env)
        res["kura_restore"].append(t); rss["kura_restore"] = max(rss["kura_restore"], m)
        got, got_files = du(dest)
        if (got, got_files) != (size, files):
            sys.exit(f"[{name}] kura restored {got_files} files / {got} B, expected {files} / {size}")
        for r, renv in remotes.items():
            # A store of its own each run: every save is cold, as the local one is.
            url = renv["KURA_STORE"]
            slash = "/" if url.endswith("/") else ""
            renv = dict(renv, KURA_STORE=f"{url.rstrip('/')}-r{run}{slash}")
            t, m = timed(f"{kura} save --format {ARGS.format} --key bench-{run} {paths}", cwd=src_base, env=renv)
            res[f"{r}_save"].append(t); rss[f"{r}_save"] = max(rss.get(f"{r}_save", 0), m)
            dest = os.path.join(out, str(run), f"{r}-dest")
            os.makedirs(dest)
            t, m = timed(f"{kura} --base-dir {dest} restore --key bench-{run} {paths}", cwd=src_base, env=renv)
            res[f"{r}_restore"].append(t); rss[f"{r}_restore"] = max(rss.get(f"{r}_restore", 0), m)
            if du(dest) != (size, files):
                sys.exit(f"[{name}] kura restored from {r} {du(dest)}, expected {(files, size)}")
        if GHA:
            bench_gha(name, src_base, top, paths, size, files, res, rss, run)
        dest = os.path.join(out, str(run), "cp-dest")
        t, m = timed(f"cp -a {src_base} {dest}")
        res["cp"].append(t); rss["cp"] = max(rss["cp"], m)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    med = {k: median(v) for k, v in res.items() if v}
    return {
        "name": name, "files": files, "mb": size / 1e6, "med": med, "rss": rss,
        "size_ratio": sizes["kura"] / sizes["tar"], "tar_mb": sizes["tar"] / 1e6,
    }


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--datasets", default="node_modules,cargo,binaries")
    p.add_argument("--format", default="archive", choices=["chunked", "archive"],
                   help="the entry format kura saves (default: archive, kura's default)")
    p.add_argument("--work", default=os.path.join(HERE, "work"))
    p.add_argument("--kura", default=os.path.join(HERE, "..", "target", "release", "kura"))
    p.add_argument("--s3", action="store_true", help="also time the S3 store against a local Garage")
    p.add_argument("--http", action="store_true", help="also time the HTTP store against a local nginx")
    p.add_argument("--oci", action="store_true", help="also time the OCI store against a local docker-registry")
    p.add_argument("--gha", action="store_true", help="also time kura vs @actions/cache on the GitHub stand-in")
    ARGS = p.parse_args()
    ARGS.work = os.path.abspath(ARGS.work)
    ARGS.kura = os.path.abspath(ARGS.kura)
    os.makedirs(ARGS.work, exist_ok=True)
    global ENDPOINT, GHA, HTTP_URL, OCI_ADDR
    procs = []
    if ARGS.http:
        proc, HTTP_URL = start_nginx(ARGS.work)
        procs.append(proc)
    if ARGS.oci:
        proc, OCI_ADDR = start_registry(ARGS.work)
        procs.append(proc)
    if ARGS.s3:
        garage, ENDPOINT = start_garage(ARGS.work)
        procs.append(garage)
    if ARGS.gha:
        GHA = start_gha(ARGS.work)
        procs += GHA[0]
    try:
        rows = [bench_dataset(n) for n in ARGS.datasets.split(",")]
    finally:
        for proc in procs:
            proc.kill()
    print(f"\nkura bench: {os.cpu_count()} cpus, runs={ARGS.runs}, scale={ARGS.scale}, warm page cache, medians\n")
    hdr = (f"{'dataset':<13}{'files':>7}{'MB':>8} | {'save s':>7}{'tar+zstd':>9}{'ratio':>7} | "
           f"{'restore s':>9}{'tar+zstd':>9}{'ratio':>7}{'cp -a':>7}{'vs cp':>7} | {'size/zstd':>9} | "
           f"{'RSS save':>8}{'RSS rest':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        m = r["med"]
        print(f"{r['name']:<13}{r['files']:>7}{r['mb']:>8.0f} | {m['kura_save']:>7.2f}{m['tar_save']:>9.2f}"
              f"{m['kura_save'] / m['tar_save']:>7.2f} | {m['kura_restore']:>9.2f}{m['tar_restore']:>9.2f}"
              f"{m['kura_restore'] / m['tar_restore']:>7.2f}{m['cp']:>7.2f}{m['kura_restore'] / m['cp']:>7.2f} | "
              f"{r['size_ratio']:>9.3f} | {r['rss']['kura_save']:>7.0f}M{r['rss']['kura_restore']:>8.0f}M")

    for r, title in [("s3", "S3 store (Garage on 127.0.0.1)"), ("http", "HTTP store (nginx WebDAV on 127.0.0.1)"),
                     ("oci", "OCI store (docker-registry on 127.0.0.1)")]:
        if not getattr(ARGS, r):
            continue
        print(f"\n{title} vs the local store, same data")
        hdr = (f"{'dataset':<13}{'MB':>8} | {'save s':>7}{'MB/s':>7}{'vs local':>9} | "
               f"{'restore s':>9}{'MB/s':>7}{'vs local':>9} | {'RSS save':>8}{'RSS rest':>9}")
        print(hdr)
        print("-" * len(hdr))
        for row in rows:
            m = row["med"]
            sv, rs = m[f"{r}_save"], m[f"{r}_restore"]
            print(f"{row['name']:<13}{row['mb']:>8.0f} | {sv:>7.2f}{row['mb'] / sv:>7.0f}"
                  f"{sv / m['kura_save']:>9.2f} | {rs:>9.2f}{row['mb'] / rs:>7.0f}"
                  f"{rs / m['kura_restore']:>9.2f} | {row['rss'][f'{r}_save']:>7.0f}M{row['rss'][f'{r}_restore']:>8.0f}M")
    if ARGS.gha:
        print("\nGitHub cache (stand-in + Azurite on 127.0.0.1): kura vs @actions/cache 6.3.0, same data")
        hdr = (f"{'dataset':<13}{'MB':>8} | {'save s':>7}{'official':>9}{'ratio':>7} | "
               f"{'restore s':>9}{'official':>9}{'ratio':>7} | {'RSS save':>8}{'RSS rest':>9}{'official':>9}")
        print(hdr)
        print("-" * len(hdr))
        for r in rows:
            m, x = r["med"], r["rss"]
            print(f"{r['name']:<13}{r['mb']:>8.0f} | {m['gha_kura_save']:>7.2f}{m['gha_official_save']:>9.2f}"
                  f"{m['gha_kura_save'] / m['gha_official_save']:>7.2f} | {m['gha_kura_restore']:>9.2f}"
                  f"{m['gha_official_restore']:>9.2f}{m['gha_kura_restore'] / m['gha_official_restore']:>7.2f} | "
                  f"{x['gha_kura_save']:>7.0f}M{x['gha_kura_restore']:>8.0f}M"
                  f"{max(x['gha_official_save'], x['gha_official_restore']):>8.0f}M")


ENDPOINT = None
GHA = None
HTTP_URL = None
OCI_ADDR = None

if __name__ == "__main__":
    main()
