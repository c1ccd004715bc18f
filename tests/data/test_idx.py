import gzip
import struct
import time
import tracemalloc

import numpy as np
import pytest

from fmnist.data import read_idx, write_idx
from fmnist.data.idx import IDX_DTYPES
from fmnist.errors import DataError

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]


def assert_one_line_naming(err: pytest.ExceptionInfo, path) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def raw_idx(code: int, dims, body: bytes) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (2, 0, 3)])
def test_round_trip(tmp_path, dtype, suffix, shape):
    rng = np.random.default_rng(1)
    arr = (rng.standard_normal(shape) * 100).astype(dtype)
    path = write_idx(tmp_path / f"a{suffix}", arr)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == shape
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable and out.flags.c_contiguous


def test_accepts_big_endian_and_non_contiguous_input(tmp_path):
    arr = np.arange(12, dtype=">i4").reshape(3, 4).T
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a", arr)), arr)


def test_gzip_argument_overrides_name_and_output_is_reproducible(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    p = write_idx(tmp_path / "plain", arr, gzip=True)
    assert p.read_bytes()[:2] == b"\x1f\x8b"
    again = write_idx(tmp_path / "again", arr, gzip=True)
    assert p.read_bytes() == again.read_bytes()
    # Read as raw (no .gz suffix) the compressed file is refused with a hint.
    with pytest.raises(DataError, match="name it .gz"):
        read_idx(p)


def test_type_code_table():
    assert sorted(IDX_DTYPES) == [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]


@pytest.mark.parametrize("dtype", ["int64", "uint16", "bool", "complex64"])
def test_write_refuses_unsupported_dtype(tmp_path, dtype):
    with pytest.raises(DataError, match="IDX cannot store dtype"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=dtype))
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    path = write_idx(tmp_path / "a.gz", np.arange(5, dtype=np.uint8))
    before = path.read_bytes()

    def boom(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(DataError) as err:
        write_idx(path, np.arange(50, dtype=np.uint8))
    assert_one_line_naming(err, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.gz"]  # no temporary left behind


def test_multi_member_gzip(tmp_path):
    blob = raw_idx(0x08, [6], bytes(range(6)))
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(blob[:9]) + gzip.compress(blob[9:]))
    np.testing.assert_array_equal(read_idx(path), np.arange(6))


def test_nul_padding_after_gzip_members_is_skipped_as_gzip_does(tmp_path):
    # Tape and block-device tools pad to a block size; gzip -t accepts it and zcat reads it.
    blob = raw_idx(0x08, [6], bytes(range(6)))
    path = tmp_path / "a.gz"
    for data in (gzip.compress(blob) + bytes(512),
                 gzip.compress(blob[:9]) + bytes(7) + gzip.compress(blob[9:]) + bytes(3)):
        assert gzip.decompress(data) == blob  # Python's gzip agrees
        path.write_bytes(data)
        np.testing.assert_array_equal(read_idx(path), np.arange(6))


def test_data_after_nul_padding_is_still_refused(tmp_path):
    blob = raw_idx(0x08, [6], bytes(range(6)))
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(blob) + bytes(512) + b"junk")
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert "corrupt gzip data" in assert_one_line_naming(err, path)


# Each corruption: (file content, expected words in the message).
GOOD_BODY = bytes(range(24))
CORRUPT = {
    "wrong magic": (b"\x01\x02" + raw_idx(0x08, [24], GOOD_BODY)[2:], "magic bytes 01 02"),
    "bad type code": (raw_idx(0x0A, [24], GOOD_BODY), "type code 0x0A"),
    "zero dims": (bytes([0, 0, 8, 0]) + GOOD_BODY, "0 dimensions"),
    "short header": (bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x02", "ends inside it"),
    "tiny file": (b"\x00\x00", "too short"),
    "dims mismatch": (raw_idx(0x08, [2, 3, 5], GOOD_BODY), "truncated"),
    "truncated data": (raw_idx(0x0C, [24], GOOD_BODY), "truncated"),
    "trailing bytes": (raw_idx(0x08, [20], GOOD_BODY), "4 extra bytes"),
}


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_file_names_itself(tmp_path, case, suffix):
    content, words = CORRUPT[case]
    if suffix == ".gz":
        content = gzip.compress(content)
        if case == "trailing bytes":
            words = "extra byte"  # the bounded read only looks one byte past the data
    path = tmp_path / f"train-images-idx3-ubyte{suffix}"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert words in assert_one_line_naming(err, path)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_huge_header_fails_fast_without_allocating(tmp_path, suffix):
    # Compressed: 8 MB of zeros (~8 KB of gzip) that a reader trusting the claim would inflate
    # before finding the data short; the claim is beyond what 8 KB can hold, so it is refused first.
    content = raw_idx(0x08, [2**31, 28, 28], bytes(8 << 20 if suffix else 28 * 28 * 3))
    path = tmp_path / f"x{suffix}"
    path.write_bytes(gzip.compress(content) if suffix else content)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(DataError) as err:
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0
    assert peak < 1 << 20
    assert "2147483648×28×28" in assert_one_line_naming(err, path)


def test_gzip_bomb_header_within_ratio_is_bounded(tmp_path):
    # A header that claims 10 MB where the gzip data really holds 20 MB: the read stops
    # one byte past the claim instead of inflating everything.
    claim = 10_000_000
    content = raw_idx(0x08, [claim], bytes(2 * claim))
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(content))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="extra byte"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * claim


def test_not_gzip_in_gz(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(raw_idx(0x08, [3], b"\x01\x02\x03"))
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert "not gzip data" in assert_one_line_naming(err, path)


@pytest.mark.parametrize("keep", [0.5, -4, 12])
def test_truncated_gzip(tmp_path, keep):
    blob = gzip.compress(raw_idx(0x08, [2000], np.random.default_rng(0).bytes(2000)))
    cut = int(len(blob) * keep) if isinstance(keep, float) else keep
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(blob[:cut])
    with pytest.raises(DataError) as err:
        read_idx(path)
    msg = assert_one_line_naming(err, path)
    assert "truncated" in msg or "ends early" in msg


def test_corrupt_gzip_stream(tmp_path):
    blob = bytearray(gzip.compress(raw_idx(0x08, [2000], np.random.default_rng(0).bytes(2000))))
    blob[len(blob) // 2] ^= 0xFF
    path = tmp_path / "x.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert_one_line_naming(err, path)


def test_bad_gzip_checksum(tmp_path):
    blob = bytearray(gzip.compress(raw_idx(0x08, [5], b"abcde")))
    blob[-8] ^= 0xFF  # CRC-32 field of the gzip trailer
    path = tmp_path / "x.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="corrupt gzip data"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as err:
        read_idx(tmp_path / "nope.gz")
    assert "no such file" in assert_one_line_naming(err, tmp_path / "nope.gz")


@pytest.mark.parametrize("inflate", ["default", "zlib"])
def test_both_inflaters_read_the_same_arrays_and_refuse_the_same_damage(tmp_path, monkeypatch, inflate):
    import zlib

    from fmnist.data import idx

    if inflate == "zlib":
        monkeypatch.setattr(idx, "_zlib", zlib)  # the fallback without zlib-ng
    arr = np.arange(5 * 28 * 28, dtype=np.uint8).reshape(5, 28, 28)
    path = write_idx(tmp_path / "x.gz", arr)
    assert np.array_equal(read_idx(path), arr)
    blob = path.read_bytes()
    (tmp_path / "cut.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="ends early|truncated"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "bad.gz").write_bytes(blob[:20] + bytes(200) + blob[220:])
    with pytest.raises(DataError, match="corrupt gzip|truncated|extra"):
        read_idx(tmp_path / "bad.gz")
