"""Tests of export.py's thread pool (kuiper_format.ordered_results): the bytes written do not depend on
--threads, results come in order, and a failing chunk fails the export as it does on one thread."""
import os
import random
import threading
import time

import numpy as np
import pytest
from conftest import run_export
from test_export_q4 import random_config

import export
import kuiper_format as kf

ARGS = [("--dtype", "q4", "--group-size", "32"), ("--dtype", "q4", "--group-size", "128"),
        ("--dtype", "int8", "--group-size", "64"), ("--dtype", "int8", "--scale-dtype", "fp32"),
        ("--dtype", "fp16",), ("--legacy",)]


@pytest.mark.parametrize("args", ARGS, ids=lambda a: " ".join(a))
def test_file_does_not_depend_on_threads(tmp_path, monkeypatch, args):
    # Chunks of 5000 values: 12 to 40 rows, so every matrix is several chunks (the last one short),
    # and q4 searches in pieces of 256 values, several a chunk.
    monkeypatch.setattr(kf, "CHUNK_ELEMS", 5000)
    monkeypatch.setattr(kf, "Q4_WORK_ELEMS", 256)
    config = random_config(tmp_path)
    files = []
    for threads in (1, 2, 5, 16):
        out = tmp_path / f"t{threads}.bin"
        assert export.main([str(out), "--random", str(config), "--seed", "7", "--threads", str(threads),
                            "-q", *args]) == 0
        files.append(out.read_bytes())
    assert all(f == files[0] for f in files[1:])
    # The same as the chunks of RandomSource written one after the other (its seeds go by chunk start).
    if args[:2] == ("--dtype", "fp16"):
        _, tensors = kf.read_kuiper(str(tmp_path / "t1.bin"), decode_tensors=False)
        src = kf.RandomSource((512, 128), 7, 0)
        want = np.concatenate([src.rows(r0, r1) for r0, r1 in kf.row_chunks(src.shape)]).astype("<f2")
        assert np.array_equal(np.asarray(tensors["tok_embeddings"]), want)


def test_ordered_results_keep_order_and_bound_the_window():
    running, most = [0], [0]
    lock = threading.Lock()

    def task(i):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(random.random() * 0.002)
        with lock:
            running[0] -= 1
        return i

    submitted = []

    def tasks():
        for i in range(200):
            submitted.append(i)
            yield lambda i=i: task(i)

    with kf.ordered_results(tasks(), 4) as results:
        for i, r in enumerate(results):
            assert r == i
            assert len(submitted) <= i + 1 + kf.CHUNKS_AHEAD * 4  # not read far ahead of the writer
    assert most[0] <= 4


class FailingSource(kf.Source):
    """Zero rows, but chunk `bad` (by its first row) raises ExportError; records the chunks asked for."""

    def __init__(self, shape, bad):
        self.shape, self.bad, self.asked, self.closed = tuple(shape), bad, [], 0

    def rows(self, r0, r1):
        self.asked.append(r0)
        if r0 == self.bad:
            raise kf.ExportError(f"chunk at row {r0} is bad")
        return np.zeros((r1 - r0,) + self.shape[1:], np.float32)

    def close(self):
        self.closed += 1


@pytest.mark.parametrize("threads", [1, 3])
def test_failing_chunk_fails_the_export_and_writes_nothing(tmp_path, monkeypatch, threads):
    monkeypatch.setattr(kf, "CHUNK_ELEMS", 64 * 10)  # 10 rows a chunk
    config = {"dtype": "int8", "group_size": 32}
    first, second = FailingSource((100, 64), bad=30), FailingSource((100, 64), bad=-1)
    out = tmp_path / "x.bin"
    with pytest.raises(kf.ExportError, match="chunk at row 30 is bad"):
        kf.write_kuiper(str(out), config, [("a", first), ("b", second)], show_progress=False,
                        threads=threads)
    assert os.listdir(tmp_path) == []
    assert first.closed and second.closed
    if threads == 1:
        assert first.asked == [0, 10, 20, 30] and second.asked == []


def test_threads_must_be_positive(tmp_path):
    proc = run_export(tmp_path / "x.bin", "--random", random_config(tmp_path), "--threads", "0")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "export.py: error: --threads must be positive"
