"""Writing a repository's files so that a running Triton never reads half a file: every file
is written beside its place and renamed over it, and only when it changed."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text)
        partial.replace(path)


def place_file(src: Path, dst: Path, *, link: bool = False) -> None:
    """dst becomes a copy of src, or a hard link where asked and the file system allows (the
    ONNX is 90 MB; every writer here replaces files, so a link never changes under a reader)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and (os.path.samefile(src, dst) or dst.read_bytes() == src.read_bytes()):
        return
    partial = dst.with_name(dst.name + ".partial")
    partial.unlink(missing_ok=True)
    if link:
        try:
            os.link(src, partial)
        except OSError:  # no hard links across file systems
            shutil.copyfile(src, partial)
    else:
        shutil.copyfile(src, partial)
    partial.replace(dst)
