#!/usr/bin/python3
"""The power cut's second half: after the process running with powercut.c
was killed (SIGKILL), undo every change under the data dir that no sync
covered, newest first, leaving what a disk that honours fsync would hold.
powercut.c's header comment states the model. Run:

    powercut_revert.py SIDE_DIR DATA_DIR

SIDE_DIR is the shim's CAIRN_POWERCUT_LOG (undo.log, preimages,
graveyard/). Prints one line of counts; revert() returns them to a test.

A record is covered by a later sync record of its key whose `upto` is past
it: a data record (D) by a sync of its file, a name record (C, L, M, U, X)
by a sync of its directory, a rename (R) by a sync of its destination
directory. Files and directories are found by (device, inode), so a file
renamed or unlinked since is still found (unlinked ones in the graveyard).
"""
import os
import shutil
import stat
import sys
from collections import Counter


def _walk(top, out, rel=""):
    for name in os.listdir(top):
        path = os.path.join(top, name)
        st = os.lstat(path)
        out.setdefault((st.st_dev, st.st_ino), (path, os.path.join(rel, name)))
        if stat.S_ISDIR(st.st_mode):
            _walk(path, out, os.path.join(rel, name))


class Tree:
    """(dev, ino) -> path, under the data dir first, then the graveyard."""

    def __init__(self, data_dir, grave):
        self.data_dir, self.grave = data_dir, grave
        self.map = None

    def find(self, dev, ino):
        if self.map is None:
            self.map = {}
            st = os.lstat(self.data_dir)
            self.map[(st.st_dev, st.st_ino)] = (self.data_dir, ".")
            _walk(self.data_dir, self.map)
            if os.path.isdir(self.grave):
                _walk(self.grave, self.map, "graveyard")
        hit = self.map.get((dev, ino))
        return hit[0] if hit else None

    def changed(self):
        self.map = None


def parse(log_path):
    records = []
    with open(log_path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            if not line.endswith("\n"):
                break  # cut while it was written: the change never began
            fields = line.split()
            records.append((int(fields[0]), fields[1], fields[2:]))
    return records


def _key(kind, f):
    if kind == "D":
        return (int(f[0]), int(f[1]))
    if kind == "R":
        return (int(f[3]), int(f[4]))
    return (int(f[0]), int(f[1]))


def _exists(path):
    try:
        os.lstat(path)
        return True
    except FileNotFoundError:
        return False


def _same(path, dev, ino):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def revert(side_dir, data_dir):
    """Undoes what no sync covered; returns counts (see the keys)."""
    grave = os.path.join(side_dir, "graveyard")
    records = parse(os.path.join(side_dir, "undo.log"))
    tree = Tree(data_dir, grave)
    covered = {}
    for seq, kind, f in records:
        if kind == "S":
            k = (int(f[0]), int(f[1]))
            covered[k] = max(covered.get(k, 0), int(f[2]))
    # Which file each record touched, by its name now, for the counts.
    names = {}
    tree.find(0, 0)
    for k, (path, rel) in tree.map.items():
        names[k] = rel
    counts = Counter(records=len(records))
    for seq, kind, f in records:
        if kind == "S":
            counts["syncs"] += 1
            counts["syncs " + names.get((int(f[0]), int(f[1])), "?")] += 1
        elif kind == "D":
            counts["data " + names.get((int(f[0]), int(f[1])), "?")] += 1
    pre = open(os.path.join(side_dir, "preimages"), "rb")
    try:
        for seq, kind, f in reversed(records):
            if kind == "S" or seq < covered.get(_key(kind, f), 0):
                continue
            if _undo(kind, f, tree, grave, pre):
                counts["undone"] += 1
                counts["undone " + kind] += 1
                if kind == "D":
                    counts["undone data " + names.get((int(f[0]), int(f[1])), "?")] += 1
    finally:
        pre.close()
    return counts


def _undo(kind, f, tree, grave, pre):
    """Undoes one record; False when there was nothing to undo."""
    if kind == "D":
        dev, ino, at, size, pre_off, pre_len = (int(x) for x in f)
        path = tree.find(dev, ino)
        if path is None:
            return False
        with open(path, "r+b") as out:
            out.truncate(size)
            if pre_len:
                pre.seek(pre_off)
                out.seek(at)
                out.write(pre.read(pre_len))
        return True
    if kind == "R":
        sdev, sino, sname, ddev, dino, dname, dev, ino, vdev, vino = f
        sdir = tree.find(int(sdev), int(sino))
        ddir = tree.find(int(ddev), int(dino))
        if sdir is None or ddir is None:
            return False
        src = os.path.join(sdir, bytes.fromhex(sname).decode())
        dst = os.path.join(ddir, bytes.fromhex(dname).decode())
        undone = False
        if _same(dst, int(dev), int(ino)) and not _exists(src):
            os.rename(dst, src)
            undone = True
        if int(vino) and not _exists(dst):
            os.link(os.path.join(grave, "%s_%s" % (vdev, vino)), dst)
            undone = True
        tree.changed()
        return undone
    pdev, pino, hexname, dev, ino = f
    parent = tree.find(int(pdev), int(pino))
    if parent is None:
        return False
    path = os.path.join(parent, bytes.fromhex(hexname).decode())
    tree.changed()
    if kind in ("C", "L"):
        # The name did not exist before: whatever holds it now goes.
        if _exists(path) and not os.path.isdir(path):
            os.unlink(path)
            return True
        return False
    if kind == "M":
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
            return True
        return False
    if kind == "U":
        if not _exists(path):
            os.link(os.path.join(grave, "%s_%s" % (dev, ino)), path)
            return True
        return False
    if kind == "X":
        if not _exists(path):
            os.mkdir(path, 0o700)
            return True
        return False
    raise ValueError("undo.log: unknown record kind %r" % kind)


def reset(side_dir):
    """Empties SIDE_DIR for the next process's log."""
    for name in os.listdir(side_dir):
        path = os.path.join(side_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: powercut_revert.py SIDE_DIR DATA_DIR")
    c = revert(sys.argv[1], sys.argv[2])
    print(" ".join("%s=%d" % (k.replace(" ", ":"), v) for k, v in sorted(c.items())))
