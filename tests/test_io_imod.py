"""IMOD .mod writer: read back with imodmodel (in a subprocess with a timeout, since it
loops forever on a file without IEOF), chunk-walked with a small reader of our own,
and compared with the layout and field conventions of real 3dmod-written models."""

from __future__ import annotations

import itertools
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tmfast.errors import ConfigError, OutputExistsError
from tmfast.io.imod import DEFAULT_COLORS, write_imod_points

REAL_MODS = sorted(
    (
        Path(__file__).resolve().parents[2] / "shared" / "data" / "formats" / "imod_mod"
    ).glob("*.mod")
)

_READER = r"""
import json, sys
import imodmodel
m = imodmodel.ImodModel.from_file(sys.argv[1])
h = m.header
out = {
    "id": [m.id.IMOD_file_id, m.id.version_id],
    "header": {k: (int(getattr(h, k)) if k == "flags" else getattr(h, k))
               for k in ("name", "xmax", "ymax", "zmax", "objsize", "pixelsize",
                         "units", "flags")},
    "objects": [],
    "n_rows": len(imodmodel.read(sys.argv[1])),
}
for o in m.objects:
    oh = o.header
    out["objects"].append({
        "name": oh.name, "contsize": oh.contsize, "scattered": oh.flags.scattered,
        "open": oh.flags.open, "pdrawsize": oh.pdrawsize,
        "rgb": [oh.red, oh.green, oh.blue], "meshsize": oh.meshsize,
        "contours": [{"points": c.points.tolist(),
                      "wild": c.header.flags.wild,
                      "sizes": None if c.point_sizes is None
                               else c.point_sizes.tolist()}
                     for c in o.contours],
    })
print(json.dumps(out))
"""


def _imodmodel_read(path: Path) -> dict[str, object]:
    pytest.importorskip("imodmodel")
    res = subprocess.run(
        [sys.executable, "-c", _READER, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def _walk(data: bytes) -> tuple[dict[str, object], list[tuple[str, int, int]]]:
    """Parse the model header and list chunks as (id, payload offset, payload size)."""
    assert data[:8] == b"IMODV1.2"
    name = data[8:136].split(b"\0")[0].decode()
    xmax, ymax, zmax, objsize = struct.unpack(">4i", data[136:152])
    (flags,) = struct.unpack(">I", data[152:156])
    pixsize, units = struct.unpack(">fi", data[216:224])
    header = {
        "name": name,
        "dims": (xmax, ymax, zmax),
        "objsize": objsize,
        "flags": flags,
        "pixsize": pixsize,
        "units": units,
    }
    chunks = []
    o = 8 + 232
    while True:
        cid = data[o : o + 4].decode("ascii")
        o += 4
        if cid == "IEOF":
            chunks.append((cid, o, 0))
            break
        if cid == "OBJT":
            size = 176
        elif cid == "CONT":
            size = 16 + 12 * struct.unpack(">i", data[o : o + 4])[0]
        elif cid == "MESH":
            vsize, lsize = struct.unpack(">ii", data[o : o + 8])
            size = 16 + 12 * vsize + 4 * lsize
        else:
            size = 4 + struct.unpack(">i", data[o : o + 4])[0]
        chunks.append((cid, o, size))
        o += size
    assert o == len(data), "bytes after IEOF"
    return header, chunks


def _example(tmp_path: Path, **kw: object) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 90, (25, 3)).round(2)
    ids = rng.integers(3, 6, 25)
    path = write_imod_points(
        tmp_path / "picks.mod",
        pts,
        object_ids=ids,
        dims_xyz=(100, 110, 120),
        pixel_size_a=13.48,
        **kw,  # type: ignore[arg-type]
    )
    return path, pts, ids


def test_imodmodel_reads_back_objects_points_and_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    radii = rng.uniform(2, 9, 25)
    path, pts, ids = _example(
        tmp_path,
        radius_px=radii,
        object_names={3: "ribosome", 4: "proteasome", 5: "x"},
        object_colors=[(1, 0, 0), (0, 0.5, 1), (0.2, 0.2, 0.2)],
    )
    m = _imodmodel_read(path)
    assert m["id"] == ["IMOD", "V1.2"]
    h = m["header"]
    assert (h["xmax"], h["ymax"], h["zmax"], h["objsize"]) == (100, 110, 120, 3)
    assert h["units"] == -9 and h["pixelsize"] == pytest.approx(1.348)
    assert m["n_rows"] == 25
    for k, (cid, name, rgb) in enumerate(
        [
            (3, "ribosome", (1, 0, 0)),
            (4, "proteasome", (0, 0.5, 1)),
            (5, "x", (0.2, 0.2, 0.2)),
        ]
    ):
        obj = m["objects"][k]
        sel = ids == cid
        assert obj["name"] == name and obj["contsize"] == 1
        assert obj["scattered"] and obj["open"] and obj["meshsize"] == 0
        assert obj["rgb"] == pytest.approx(rgb)
        assert obj["pdrawsize"] == round(float(np.median(radii[sel])))
        (cont,) = obj["contours"]
        assert cont["wild"]
        want = pts[sel] + np.array([0.5, 0.5, 0.0])
        np.testing.assert_allclose(cont["points"], want, atol=1e-4)
        np.testing.assert_allclose(cont["sizes"], radii[sel], rtol=1e-6)


def test_single_object_defaults_and_no_offset(tmp_path: Path) -> None:
    pts = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    path = write_imod_points(tmp_path / "a.mod", pts, xy_pixel_centre_offset=False)
    m = _imodmodel_read(path)
    h = m["header"]
    assert (h["xmax"], h["ymax"], h["zmax"]) == (11, 21, 31)
    (obj,) = m["objects"]
    assert obj["name"] == "particles" and obj["pdrawsize"] == 3
    assert obj["rgb"] == pytest.approx(DEFAULT_COLORS[0])
    assert obj["contours"][0]["sizes"] is None  # whole-pixel radius: no SIZE chunk
    np.testing.assert_allclose(obj["contours"][0]["points"], pts)


def test_chunk_layout(tmp_path: Path) -> None:
    path, _, ids = _example(tmp_path, radius_px=4.5)
    _, chunks = _walk(path.read_bytes())
    assert [c[0] for c in chunks] == ["OBJT", "CONT", "SIZE"] * 3 + ["IEOF"]
    for (cid, _, size), (nxt, _, nsize) in itertools.pairwise(chunks):
        if cid == "CONT":
            n = (size - 16) // 12
            assert nxt == "SIZE" and nsize == 4 + 4 * n
    n_per_obj = [(ids == c).sum() for c in (3, 4, 5)]
    conts = [c for c in chunks if c[0] == "CONT"]
    assert [(s - 16) // 12 for _, _, s in conts] == n_per_obj
    assert path.read_bytes().endswith(b"IEOF")


@pytest.mark.skipif(not REAL_MODS, reason="../shared/data/formats/imod_mod not present")
def test_follows_real_3dmod_conventions(tmp_path: Path) -> None:
    path, _, _ = _example(tmp_path, radius_px=np.linspace(2, 8, 25))
    ours, our_chunks = _walk(path.read_bytes())
    data = path.read_bytes()
    for real_path in REAL_MODS:
        real, chunks = _walk(real_path.read_bytes())  # our walker parses real files too
        assert chunks[-1][0] == "IEOF"
        assert real["units"] == ours["units"] == -9  # pixel size stored in nm
        # Z of section k is k (bit 10) and the 3dmod bits 12-15 are set in every file.
        assert real["flags"] & 0xF400 == ours["flags"] & 0xF400 == 0xF400
        assert real["objsize"] == sum(c[0] == "OBJT" for c in chunks)
        assert all(d > 0 for d in real["dims"])
    # The real scattered-points object with per-point sizes: same flags and SIZE layout.
    real_data = (REAL_MODS[0].parent / "point_sizes_example.mod").read_bytes()
    _, real_chunks = _walk(real_data)
    real_objt = real_chunks[0][1]
    (real_oflags,) = struct.unpack(">I", real_data[real_objt + 132 : real_objt + 136])
    our_objt = our_chunks[0][1]
    (our_oflags,) = struct.unpack(">I", data[our_objt + 132 : our_objt + 136])
    scat_open = (1 << 9) | (1 << 3)
    assert real_oflags & scat_open == our_oflags & scat_open == scat_open
    cont_real, size_real = real_chunks[1], real_chunks[2]
    assert size_real[0] == "SIZE" and size_real[2] == 4 + 4 * (cont_real[2] - 16) // 12
    (real_cflags,) = struct.unpack(">I", real_data[cont_real[1] + 4 : cont_real[1] + 8])
    (our_cflags,) = struct.unpack(
        ">I", data[our_chunks[1][1] + 4 : our_chunks[1][1] + 8]
    )
    assert real_cflags & 0x10 == our_cflags & 0x10 == 0x10  # wild contour


def test_overwrite_refused(tmp_path: Path) -> None:
    path = write_imod_points(tmp_path / "a.mod", np.zeros((1, 3)))
    with pytest.raises(OutputExistsError):
        write_imod_points(path, np.ones((1, 3)))
    write_imod_points(path, np.ones((2, 3)), overwrite=True)
    assert _walk(path.read_bytes())[0]["objsize"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mod"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"points_xyz": np.zeros((3, 2))}, "points_xyz"),
        ({"points_xyz": np.array([[np.nan, 0, 0]])}, "NaN"),
        ({"object_ids": [1, 2]}, "object_ids"),
        ({"radius_px": [1.0, 2.0]}, "radius_px"),
        ({"radius_px": 0.0}, "radius_px"),
        ({"object_names": ["a", "b"]}, "object_names"),
        ({"object_colors": [(2.0, 0.0, 0.0)]}, "colour"),
        ({"dims_xyz": (0, 1, 1)}, "dims_xyz"),
        ({"pixel_size_a": -1.0}, "pixel_size_a"),
    ],
)
def test_bad_input(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"points_xyz": np.zeros((3, 3))}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        write_imod_points(tmp_path / "x.mod", **args)  # type: ignore[arg-type]
    assert not (tmp_path / "x.mod").exists()


def test_no_points_gives_an_empty_object(tmp_path: Path) -> None:
    path = write_imod_points(
        tmp_path / "e.mod",
        np.zeros((0, 3)),
        radius_px=4.2,
        object_names=["tomo_1"],
        dims_xyz=(10, 20, 30),
    )
    m = _imodmodel_read(path)
    assert m["n_rows"] == 0
    (obj,) = m["objects"]
    assert obj["name"] == "tomo_1" and obj["pdrawsize"] == 4
    assert [len(c["points"]) for c in obj["contours"]] == [0]
