#!/usr/bin/env python3
"""Write a release's sha256 sums into what verifies downloads: the action's sha256sums.txt,
the orb's install script and the GitLab template (both keep "<version> <asset> <sha256>"
lines, so older versions stay installable).

Usage: release/write-sums.py VERSION SHA256SUMS   (SHA256SUMS as `sha256sum` prints it)
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main():
    version, sums_file = sys.argv[1], sys.argv[2]
    sums = []
    for line in open(sums_file):
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[0]) and parts[1].startswith("kura-"):
            sums.append((parts[1].lstrip("*"), parts[0]))
    if not sums:
        sys.exit(f"no kura-* sums in {sums_file}")
    # The action pins one release: its list is this release's.
    with open(os.path.join(ROOT, "action", "sha256sums.txt"), "w") as f:
        f.write("# sha256 of each release asset, written by the release workflow; the shim refuses any other binary.\n")
        for asset, digest in sums:
            f.write(f"{digest}  {asset}\n")
    rows = "".join(f"{version} {asset} {digest}\n" for asset, digest in sums)
    for rel, var in (("orb/src/scripts/install.sh", "SUMS"), ("templates/gitlab/kura.gitlab-ci.yml", "sums")):
        path = os.path.join(ROOT, rel)
        text = open(path).read()
        m = re.search(rf'^(\s*){var}="([^"]*)"$', text, re.M)
        if not m:
            sys.exit(f"{rel}: no {var}=\"...\" line")
        indent, old = m.group(1), m.group(2)
        kept = [l for l in old.split("\n") if l.strip() and not l.strip().startswith(f"{version} ")]
        lines = [l.strip() for l in kept] + rows.strip().split("\n")
        new = f'{indent}{var}="' + ("\n" + indent).join(lines) + '"'
        text = text[: m.start()] + new + text[m.end():]
        open(path, "w").write(text)


if __name__ == "__main__":
    main()
