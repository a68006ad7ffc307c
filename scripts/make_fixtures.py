#!/usr/bin/env python3
"""Rebuilds the test fixtures (tests/fixtures/data) from the real datasets (../shared/data).

The fixtures are small cuts of the real files, in the same formats and folder layout, so the
ordinary tests run on a fresh clone with no network (see tests/fixtures/README.md). Python 3.11
standard library only; the output is byte-for-byte deterministic (fixed gzip and tar
timestamps, fixed file order), so rebuilding from the same source gives the same files.

    python3 scripts/make_fixtures.py [--source ../shared/data] [--out tests/fixtures/data]

It prints the sha256 of the four cut MNIST IDX files (decompressed): they must match
`FIXTURE_SHA256` in src/data/mnist.rs, the loader's list of accepted MNIST content.
"""

import argparse
import gzip
import hashlib
import io
import shutil
import struct
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Examples kept, per class (the first ones, in the source's order).
MNIST_TRAIN_PER_CLASS = 50  # 500 train images: enough for a 320-image slice and a 256 batch
MNIST_TEST_PER_CLASS = 20  # 200 test images
CIFAR_TRAIN_PER_CLASS = 30  # 300 train JPEGs (a smoke run takes 256)
CIFAR_TEST_PER_CLASS = 20  # 200 test JPEGs
TINY_CLASSES = 5  # the first 5 wnids (sorted), as `classes: 5` would keep
TINY_TRAIN_PER_CLASS = 20  # 100 train JPEGs
TINY_VAL_PER_CLASS = 10  # 50 validation JPEGs
GLUE_TRAIN_ROWS = 256  # the smoke profile's train_subset
GLUE_DEV_ROWS = 128  # the smoke profile's test_subset
GLUE_TEST_ROWS = 20  # unlabelled, not read by the loader: kept for the layout

# Archive entries get this modification time (the shared CIFAR-10 archive's own: 2000-01-01).
MTIME = 946684800


def write_gz(path: Path, data: bytes) -> None:
    """Gzip with no name and a zero timestamp in the header, so the bytes are reproducible."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    path.write_bytes(buffer.getvalue())


def first_per_class(labels: bytes | list, per_class: int) -> list[int]:
    """Indices of the first `per_class` examples of each label, in their original order."""
    seen: dict = {}
    keep = []
    for i, label in enumerate(labels):
        if seen.get(label, 0) < per_class:
            seen[label] = seen.get(label, 0) + 1
            keep.append(i)
    return keep


def mnist(source: Path, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for prefix, per_class in [("train", MNIST_TRAIN_PER_CLASS), ("t10k", MNIST_TEST_PER_CLASS)]:
        labels_raw = gzip.decompress((source / f"{prefix}-labels-idx1-ubyte.gz").read_bytes())
        images_raw = gzip.decompress((source / f"{prefix}-images-idx3-ubyte.gz").read_bytes())
        magic, n = struct.unpack(">II", labels_raw[:8])
        assert magic == 0x0801
        labels = labels_raw[8 : 8 + n]
        magic, n_images, rows, cols = struct.unpack(">IIII", images_raw[:16])
        assert magic == 0x0803 and n_images == n and (rows, cols) == (28, 28)
        keep = first_per_class(labels, per_class)
        size = rows * cols
        cut_labels = struct.pack(">II", 0x0801, len(keep)) + bytes(labels[i] for i in keep)
        cut_images = struct.pack(">IIII", 0x0803, len(keep), rows, cols) + b"".join(
            images_raw[16 + i * size : 16 + (i + 1) * size] for i in keep
        )
        for stem, data in [
            (f"{prefix}-labels-idx1-ubyte", cut_labels),
            (f"{prefix}-images-idx3-ubyte", cut_images),
        ]:
            write_gz(out / f"{stem}.gz", data)
            checksums[stem] = hashlib.sha256(data).hexdigest()
    return checksums


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = MTIME
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name.rstrip("/") + "/")
    info.type = tarfile.DIRTYPE
    info.mtime = MTIME
    info.mode = 0o755
    tar.addfile(info)


def write_tar_gz(path: Path, entries: list[tuple[str, bytes | None]]) -> None:
    """A `.tar.gz` of `entries` (name, bytes; None for a folder), in the given order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in entries:
            if data is None:
                add_dir(tar, name)
            else:
                add_bytes(tar, name, data)
    write_gz(path, buffer.getvalue())


def with_folders(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes | None]]:
    """Inserts each folder entry before its first file, as `tar` lays an archive out."""
    entries: list[tuple[str, bytes | None]] = []
    made = set()
    for name, data in files:
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in made:
                made.add(folder)
                entries.append((folder, None))
        entries.append((name, data))
    return entries


def cifar(source: Path, out: Path) -> int:
    """First JPEGs (by file name) of each class of each split, copied byte for byte, in the
    source archive's order, with its README.md and SOURCES.txt."""
    wanted = {"train": CIFAR_TRAIN_PER_CLASS, "test": CIFAR_TEST_PER_CLASS}
    files: list[tuple[str, bytes]] = []
    by_folder: dict[tuple[str, str], list[str]] = {}
    with tarfile.open(source, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = member.name.split("/")
            files.append((member.name, tar.extractfile(member).read()))
            if len(parts) == 4 and parts[1] in wanted and parts[3].endswith(".jpg"):
                by_folder.setdefault((parts[1], parts[2]), []).append(member.name)
    assert len(by_folder) == 20, sorted(by_folder)
    keep = {
        name
        for (split, _), names in by_folder.items()
        for name in sorted(names)[: wanted[split]]
    }
    files = [(n, d) for n, d in files if len(n.split("/")) == 2 or n in keep]
    write_tar_gz(out / "cifar10-jpg.tar.gz", with_folders(files))
    return len(keep)


def tiny_imagenet(source: Path, out: Path) -> int:
    """The first classes' first train images (by file name) and validation images (in the
    annotation file's order), in the source archive's order, with matching text files."""
    top = "tiny-imagenet-200"
    members: list[tuple[str, bytes]] = []
    with tarfile.open(source, "r:gz") as tar:
        for member in tar:
            if member.isfile():
                members.append((member.name, tar.extractfile(member).read()))
    content = dict(members)
    wnids = sorted(content[f"{top}/wnids.txt"].decode().split())[:TINY_CLASSES]
    keep = set()
    for wnid in wnids:
        prefix = f"{top}/train/{wnid}/images/"
        names = [n for n, _ in members if n.startswith(prefix) and n.endswith(".JPEG")]
        keep.update(sorted(names)[:TINY_TRAIN_PER_CLASS])
    annotations = []
    per_class: dict[str, int] = {}
    for line in content[f"{top}/val/val_annotations.txt"].decode().splitlines(keepends=True):
        image, wnid = line.split("\t")[:2]
        if wnid in wnids and per_class.get(wnid, 0) < TINY_VAL_PER_CLASS:
            per_class[wnid] = per_class.get(wnid, 0) + 1
            annotations.append(line)
            keep.add(f"{top}/val/images/{image}")
    words = [
        line
        for line in content[f"{top}/words.txt"].decode().splitlines(keepends=True)
        if line.split("\t", 1)[0] in wnids
    ]
    text = {
        f"{top}/wnids.txt": "".join(w + "\n" for w in wnids).encode(),
        f"{top}/words.txt": "".join(words).encode(),
        f"{top}/val/val_annotations.txt": "".join(annotations).encode(),
    }
    files = [(n, text.get(n, d)) for n, d in members if n in keep or n in text]
    write_tar_gz(out / "tiny-imagenet-200.tar.gz", with_folders(files))
    return len(keep)


def head_lines(path: Path, rows: int, header: bool) -> bytes:
    """The file's first `rows` data rows (after its header row, if any), bytes unchanged."""
    lines = path.read_bytes().splitlines(keepends=True)
    return b"".join(lines[: rows + (1 if header else 0)])


def glue(source: Path, out: Path) -> None:
    # (folder, train/dev have a header row); test.tsv always has one.
    for task, header in [("CoLA", False), ("SST-2", True), ("MRPC", True)]:
        (out / task).mkdir(parents=True, exist_ok=True)
        for split, rows, has_header in [
            ("train", GLUE_TRAIN_ROWS, header),
            ("dev", GLUE_DEV_ROWS, header),
            ("test", GLUE_TEST_ROWS, True),
        ]:
            data = head_lines(source / task / f"{split}.tsv", rows, has_header)
            (out / task / f"{split}.tsv").write_bytes(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "data")
    args = parser.parse_args()
    source, out = args.source, args.out
    if not (source / "mnist").is_dir():
        raise SystemExit(f"{source} does not hold the real datasets (no mnist/ folder)")
    for folder in ["mnist", "cifar10", "tiny-imagenet", "glue_data", "bert-base-uncased"]:
        shutil.rmtree(out / folder, ignore_errors=True)

    checksums = mnist(source / "mnist", out / "mnist")
    cifar_images = cifar(source / "cifar10" / "cifar10-jpg.tar.gz", out / "cifar10")
    tiny_images = tiny_imagenet(
        source / "tiny-imagenet" / "tiny-imagenet-200-subset100.tar.gz", out / "tiny-imagenet"
    )
    glue(source / "glue_data", out / "glue_data")
    (out / "bert-base-uncased").mkdir(parents=True, exist_ok=True)
    for name in ["vocab.txt", "tokenizer.json"]:
        shutil.copyfile(source / "bert-base-uncased" / name, out / "bert-base-uncased" / name)

    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {total / 1e6:.2f} MB ({cifar_images} CIFAR-10 JPEGs, "
          f"{tiny_images} Tiny ImageNet JPEGs)")
    print("MNIST IDX content sha256 (FIXTURE_SHA256 in src/data/mnist.rs):")
    for stem, digest in checksums.items():
        print(f"    (\"{stem}\", \"{digest}\"),")


if __name__ == "__main__":
    main()
