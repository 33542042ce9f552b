"""STAR writer and reader, checked against starfile and real RELION files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tmfast.errors import ConfigError, FormatError, OutputExistsError
from tmfast.io.star import read_star, star_to_string, star_version, write_star

starfile = pytest.importorskip("starfile")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "formats"
REAL_STAR_FILES = sorted(
    [
        *(SHARED / "relion5_particles").glob("*.star"),
        *(SHARED / "relion5_tomograms").rglob("*.star"),
    ]
)


def _relion5_particles(n: int, seed: int = 0) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    return {
        "rlnTomoName": [f"TS_{i % 3:02d}" for i in range(n)],
        "rlnCenteredCoordinateXAngst": (rng.random(n, dtype=np.float32) - 0.5) * 5e3,
        "rlnCenteredCoordinateYAngst": (rng.random(n, dtype=np.float32) - 0.5) * 5e3,
        "rlnCenteredCoordinateZAngst": (rng.random(n, dtype=np.float32) - 0.5) * 1e3,
        "rlnAngleRot": rng.uniform(-180, 180, n),
        "rlnAngleTilt": rng.uniform(0, 180, n),
        "rlnAnglePsi": rng.uniform(-180, 180, n),
        "rlnLCCmax": rng.random(n, dtype=np.float32) * np.float32(1e-3),
        "rlnCutOff": np.full(n, 0.148684, np.float32),
        "rlnSearchStd": np.full(n, 0.022856, np.float32),
        "rlnTomoTiltSeriesPixelSize": np.full(n, 1.35),
        "rlnClassNumber": rng.integers(1, 4, n),
    }


def _optics() -> dict[str, object]:
    return {
        "rlnOpticsGroup": [1],
        "rlnOpticsGroupName": ["optics1"],
        "rlnVoltage": [300.0],
        "rlnSphericalAberration": [2.7],
        "rlnAmplitudeContrast": [0.1],
        "rlnTomoTiltSeriesPixelSize": [1.35],
    }


def _assert_column_equal(got: object, want: np.ndarray) -> None:
    got_arr = np.asarray(got)
    if want.dtype.kind == "f":
        # Floats must read back to exactly the value written, at the written precision.
        np.testing.assert_array_equal(got_arr.astype(want.dtype), want)
    elif want.dtype.kind in "iu":
        assert got_arr.dtype.kind in "iu"
        np.testing.assert_array_equal(got_arr, want)
    else:
        assert [str(v) for v in got_arr.tolist()] == [str(v) for v in want.tolist()]


def test_relion5_particles_read_back_by_starfile(tmp_path: Path) -> None:
    cols = _relion5_particles(500)
    cols["rlnTomoName"] = [f"tomo {i}" if i % 5 == 0 else f"t{i}" for i in range(500)]
    path = write_star(
        tmp_path / "p.star",
        {
            "general": {"rlnTomoSubTomosAre2DStacks": 0},
            "optics": _optics(),
            "particles": cols,
        },
    )
    data = starfile.read(path, always_dict=True)
    assert list(data) == ["general", "optics", "particles"]
    assert data["general"] == {"rlnTomoSubTomosAre2DStacks": 0}
    for label, want in cols.items():
        _assert_column_equal(data["particles"][label].to_numpy(), np.asarray(want))
    for label, want in _optics().items():
        _assert_column_equal(data["optics"][label].to_numpy(), np.asarray(want))
    # and through tmfast's own reader
    ours = read_star(path)
    assert ours["general"]["rlnTomoSubTomosAre2DStacks"].tolist() == [0]
    for label, want in cols.items():
        _assert_column_equal(ours["particles"][label], np.asarray(want))


def test_pytom_default_columns(tmp_path: Path) -> None:
    n = 50
    rng = np.random.default_rng(3)
    cols = {
        "rlnCoordinateX": rng.integers(0, 500, n).astype(np.float32),
        "rlnCoordinateY": rng.integers(0, 500, n).astype(np.float32),
        "rlnCoordinateZ": rng.integers(0, 200, n).astype(np.float32),
        "rlnAngleRot": rng.uniform(-180, 180, n),
        "rlnAngleTilt": rng.uniform(0, 180, n),
        "rlnAnglePsi": rng.uniform(-180, 180, n),
        "rlnLCCmax": rng.random(n, dtype=np.float32),
        "rlnCutOff": np.full(n, 0.3, np.float32),
        "rlnSearchStd": np.full(n, 0.05, np.float32),
        "rlnDetectorPixelSize": np.full(n, 13.48, np.float32),
        "rlnMicrographName": np.array(["rec_tomo200528_107"] * n),
    }
    path = write_star(tmp_path / "pytom.star", {"particles": cols})
    df = starfile.read(path)
    assert list(df.columns) == list(cols)
    for label, want in cols.items():
        _assert_column_equal(df[label].to_numpy(), np.asarray(want))
    # integral float32 coordinates stay floats in the file
    assert df["rlnCoordinateX"].dtype.kind == "f"


def test_float_formatting_round_trips_exactly() -> None:
    rng = np.random.default_rng(5)
    f32 = np.concatenate(
        [
            rng.standard_normal(2000).astype(np.float32)
            * np.float32(10.0) ** rng.integers(-30, 30, 2000).astype(np.float32),
            np.array(
                [0.0, -0.0, 1.0, 1e-45, 3.4028235e38, np.nan, np.inf, -np.inf],
                np.float32,
            ),
        ]
    )
    f64 = rng.standard_normal(2000) * 10.0 ** rng.integers(-200, 200, 2000)
    text = star_to_string({"t": {"a": f32[:2000], "b": f64}, "u": {"c": f32[2000:]}})
    lines = text.split("loop_\n")[1].splitlines()[2:2002]
    a = np.array([float(line.split()[0]) for line in lines], np.float32)
    b = np.array([float(line.split()[1]) for line in lines])
    np.testing.assert_array_equal(a.view(np.uint32), f32[:2000].view(np.uint32))
    np.testing.assert_array_equal(b, f64)
    tail = text.split("loop_\n")[2].splitlines()[1:]
    assert tail == ["0.0", "-0.0", "1.0", "1e-45", "3.4028235e38", "nan", "inf", "-inf"]


def test_quoting_and_own_reader(tmp_path: Path) -> None:
    names = [
        "plain",
        "with space",
        "",
        "_underscore",
        "data_like",
        'say "hi" now',
        "tab\tinside",
        "#hash",
        "Pos_1_11.80Å",
    ]
    path = write_star(
        tmp_path / "q.star", {"s": {"rlnName": names, "rlnI": np.arange(len(names))}}
    )
    ours = read_star(path)
    assert ours["s"]["rlnName"].tolist() == names
    assert ours["s"]["rlnI"].dtype == np.int64
    # starfile turns ' into " before parsing, so give it names without quotes.
    simple = [n for n in names if "'" not in n and '"' not in n]
    path2 = write_star(tmp_path / "q2.star", {"s": {"rlnName": simple}})
    assert starfile.read(path2)["rlnName"].tolist() == simple


def test_reader_syntax(tmp_path: Path) -> None:
    text = (
        "# comment line\n\ndata_\n\nloop_\n_rlnA #1\n_rlnB #2\n1 'x y'  # trailing\n"
        '2 "z"\n\ndata_kv\n_rlnK 3.5\n_rlnS text\n\ndata_empty\nloop_\n_rlnX\n'
        "\ndata_mixed\nloop_\n_rlnM\n1\n2.5\nnan\n"
    )
    p = tmp_path / "s.star"
    p.write_text(text)
    r = read_star(p)
    assert list(r) == ["", "kv", "empty", "mixed"]
    assert r[""]["rlnA"].tolist() == [1, 2] and r[""]["rlnA"].dtype == np.int64
    assert r[""]["rlnB"].tolist() == ["x y", "z"]
    assert r["kv"]["rlnK"].tolist() == [3.5] and r["kv"]["rlnS"].tolist() == ["text"]
    assert r["empty"]["rlnX"].shape == (0,)
    m = r["mixed"]["rlnM"]
    assert m.dtype == np.float64 and m[:2].tolist() == [1.0, 2.5] and np.isnan(m[2])


@pytest.mark.skipif(not REAL_STAR_FILES, reason="../shared/data/formats not present")
@pytest.mark.parametrize("path", REAL_STAR_FILES, ids=lambda p: p.name)
def test_real_files_match_starfile(path: Path) -> None:
    ours = read_star(path)
    theirs = starfile.read(path, always_dict=True)
    assert list(ours) == list(theirs)
    for name, block in theirs.items():
        if isinstance(block, dict):
            assert list(ours[name]) == list(block)
            for k, v in block.items():
                got = ours[name][k]
                assert got.shape == (1,)
                if isinstance(v, str):
                    assert got[0] == v
                else:
                    assert got[0] == pytest.approx(v, rel=1e-12)
            continue
        assert list(ours[name]) == list(block.columns)
        for col in block.columns:
            want = block[col].to_numpy()
            got = ours[name][col]
            assert got.shape == want.shape, (name, col)
            if want.dtype.kind in "iu":
                assert got.dtype == np.int64
                np.testing.assert_array_equal(got, want)
            elif want.dtype.kind == "f":
                assert got.dtype.kind in "fi"
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
            else:
                assert [str(v) for v in got] == [str(v) for v in want]


def test_overwrite_and_atomicity(tmp_path: Path) -> None:
    path = tmp_path / "a.star"
    write_star(path, {"x": {"rlnA": [1, 2]}})
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        write_star(path, {"x": {"rlnA": [3]}})
    # A value Rust cannot write: the old file stays and no temporary is left.
    with pytest.raises(ConfigError, match="line break"):
        write_star(path, {"x": {"rlnA": ["a\nb"]}}, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.star"]
    write_star(path, {"x": {"rlnA": [3]}}, overwrite=True)
    assert read_star(path)["x"]["rlnA"].tolist() == [3]


@pytest.mark.parametrize(
    ("blocks", "match"),
    [
        ({"x": {"a": [1, 2], "b": [1]}}, "different lengths"),
        ({"x": {"a": [1, 2], "b": 3}}, "mixes scalars"),
        ({"x": {}}, "no columns"),
        ({"x": {"a": np.zeros((2, 2))}}, "1-D"),
        ({"x": {"a": [object(), object()]}}, "dtype"),
        ({"x y": {"a": [1]}}, "whitespace"),
        ({"x": {"a b": [1]}}, "whitespace"),
    ],
)
def test_bad_blocks(blocks: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        star_to_string(blocks)  # type: ignore[arg-type]


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="not found"):
        read_star(tmp_path / "missing.star")
    bad = tmp_path / "bad.star"
    bad.write_text("data_x\nloop_\n_a\n_b\n1 2 3\n")
    with pytest.raises(FormatError, match=r"bad\.star"):
        read_star(bad)
    dup = tmp_path / "dup.star"
    dup.write_text("data_x\n_a 1\ndata_x\n_a 2\n")
    with pytest.raises(FormatError, match="twice"):
        read_star(dup)


def test_dataframe_block(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"rlnA": [1.5, 2.5], "rlnB": ["u", "v"]})
    text = star_to_string({"d": df})
    assert "_rlnA #1" in text and "1.5 u" in text


def test_as_text_keeps_values_as_written(tmp_path: Path) -> None:
    p = tmp_path / "t.star"
    p.write_text(
        "# version 50001\n\ndata_global\nloop_\n_rlnTomoName #1\n_rlnTomoHand #2\n"
        "007 -1.000\n'T S' 1\n\ndata_k\n_rlnV 0012\n"
    )
    text = read_star(p, as_text=True)
    assert text["global"]["rlnTomoName"].tolist() == ["007", "T S"]
    assert text["global"]["rlnTomoHand"].tolist() == ["-1.000", "1"]
    assert text["k"]["rlnV"].tolist() == ["0012"]
    typed = read_star(p)  # the same file typed: the leading zeros are gone
    assert typed["k"]["rlnV"].tolist() == [12]
    assert star_version(p) == 50001
    p.write_text("data_x\n# version 50001\n_a 1\n")
    assert star_version(p) is None  # only a comment before the first block counts
    assert star_version(tmp_path / "missing.star") is None


def test_binary_input_is_named_not_quoted(tmp_path: Path) -> None:
    """An MRC map given as a STAR file: one short line, no header bytes quoted."""
    mrcfile = pytest.importorskip("mrcfile")
    p = tmp_path / "tmpl.mrc"
    with mrcfile.new(p) as m:
        m.set_data(np.ones((24, 24, 24), np.float32))
    with pytest.raises(FormatError) as err:
        read_star(p)
    assert str(err.value) == f"{p}: not a STAR file (binary data; an MRC map?)"


def test_quoted_file_content_is_a_short_printable_excerpt(tmp_path: Path) -> None:
    p = tmp_path / "bad.star"
    p.write_text("garbage\x01\x02" + "y" * 400 + "\n")
    with pytest.raises(FormatError) as err:
        read_star(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}: line 1: ") and "before any data_ block" in msg
    assert "y" * 61 not in msg and "y" * 40 in msg and "..." in msg
    assert msg.isprintable() and len(msg) < 200 + len(str(p))


def test_rust_writer_io_errors_carry_errno_and_the_file_name(tmp_path: Path) -> None:
    """An I/O failure inside the Rust STAR writer is an OSError with its errno and
    the file it was writing (here EFBIG under a file-size limit), as Python's own
    OSErrors are, not a message with a placeholder name."""
    import resource
    import signal
    import subprocess
    import sys

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    out = tmp_path / "big.star"
    code = (
        "import errno, sys, numpy as np\n"
        "from tmfast import _rust\n"
        "from tmfast.io.star import _to_rust\n"
        "x = np.arange(20000, dtype=np.float64) * 1.123456789\n"
        "blocks = _to_rust({'p': {'rlnCoordinateX': x}})\n"
        "try:\n"
        f"    _rust.write_star({str(out)!r}, blocks)\n"
        "except OSError as e:\n"
        "    print(e.errno == errno.EFBIG, e.filename, e.strerror)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        check=True,
        timeout=60,
    )
    ok, name, *why = done.stdout.split()
    assert ok == "True", done.stdout + done.stderr
    assert name == str(out)
    assert "os error" not in " ".join(why)
