"""The batch manifest: one JSON file describing every tomogram of a batch.

A manifest entry holds everything one SLURM array task needs to match and extract
one tomogram: the tomogram path, its acquisition metadata, the output folder and
the matching and extraction parameters. ``tmfast batch plan`` writes it; ``submit``,
``status``, ``resume``, ``finish`` and ``run-task`` read it. The array index of an
entry is its position in :attr:`Manifest.entries`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from tmfast._fileio import atomic_path, read_json
from tmfast.errors import FormatError
from tmfast.metadata import TiltSeriesMetadata

__all__ = [
    "MANIFEST_FORMAT_VERSION",
    "Manifest",
    "ManifestEntry",
    "TomogramEntry",
]

MANIFEST_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class TomogramEntry:
    """One tomogram of a RELION5 or AreTomo3 project, as the importers find it.

    Attributes
    ----------
    tomo_name
        Name of the tomogram (RELION5 ``rlnTomoName`` or the AreTomo3 prefix).
    tomogram
        Reconstruction to search, or ``None`` when none was found.
    metadata_source
        File the per-tilt metadata comes from (tilt-series STAR or ``.aln``).
    voxel_size_a
        Tomogram voxel size in Å (tilt-series pixel size x binning), if known.
    tilt_series_pixel_size_a
        Pixel size of the tilt images in Å, if known.
    binning
        Tomogram binning relative to the tilt series, if known.
    size_xyz
        Size of a bin-1 tomogram in tilt-series pixels (RELION ``rlnTomoSize``).
    half
        ``None`` for the full reconstruction, ``"half1"``/``"half2"`` for half sets.
    problems
        Reasons this entry cannot be matched (empty when usable).
    """

    tomo_name: str
    tomogram: Path | None
    metadata_source: Path | None = None
    voxel_size_a: float | None = None
    tilt_series_pixel_size_a: float | None = None
    binning: float | None = None
    size_xyz: tuple[int, int, int] | None = None
    half: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def tomo_id(self) -> str:
        """Output name: ``tomo_name``, plus ``_half1``/``_half2`` for half sets."""
        return self.tomo_name if self.half is None else f"{self.tomo_name}_{self.half}"

    @property
    def ok(self) -> bool:
        """Whether the entry has no problems."""
        return not self.problems


@dataclasses.dataclass(frozen=True, kw_only=True)
class ManifestEntry:
    """One array task: a tomogram with its metadata and output folder.

    Attributes
    ----------
    index
        SLURM array index (position in the manifest).
    key
        Unique name of the entry: the project's tomogram name, plus ``_half1`` /
        ``_half2`` for half sets; also the name of its output folder.
    tomo_name
        Name in the source project (RELION ``rlnTomoName``, AreTomo3 prefix);
        written as ``rlnTomoName`` into the particle STAR files.
    tomogram
        Absolute path of the tomogram.
    output_dir
        Folder for this tomogram's maps, job file and particles.
    voxel_size_a
        Tomogram voxel size in Å (``None``: from the MRC header).
    metadata
        Per-tilt acquisition metadata, or ``None`` (no CTF, no dose weighting).
    size_xyz
        Bin-1 tomogram size (RELION5 ``rlnTomoSize``), for centred STAR coordinates.
    metadata_source
        File the metadata was read from.
    tomogram_mask
        Per-tomogram mask (voxels ``<= 0`` are not searched), if any.
    """

    index: int
    key: str
    tomo_name: str
    tomogram: str
    output_dir: str
    voxel_size_a: float | None
    metadata: TiltSeriesMetadata | None = None
    size_xyz: tuple[int, int, int] | None = None
    metadata_source: str | None = None
    tomogram_mask: str | None = None

    @property
    def tomo_id(self) -> str:
        """Stem of the tomogram file: the prefix of the match outputs."""
        name = Path(self.tomogram).name
        for ext in (".mrc", ".rec", ".map", ".st"):
            if name.lower().endswith(ext):
                return name[: -len(ext)]
        return Path(self.tomogram).stem

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        d = dataclasses.asdict(self)
        d["metadata"] = None if self.metadata is None else self.metadata.to_dict()
        d["size_xyz"] = None if self.size_xyz is None else list(self.size_xyz)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManifestEntry:
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        if d.get("metadata") is not None:
            d["metadata"] = TiltSeriesMetadata.from_dict(d["metadata"])
        if d.get("size_xyz") is not None:
            d["size_xyz"] = tuple(int(v) for v in d["size_xyz"])
        return cls(**d)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Manifest:
    """A batch: shared matching/extraction/SLURM options and one entry per tomogram.

    Attributes
    ----------
    source
        ``"relion5"`` or ``"aretomo3"``.
    source_path
        The tomograms.star or AreTomo3 folder the batch was planned from.
    output_dir
        Batch folder: manifest, SLURM script, logs, one sub-folder per tomogram.
    match
        Matching options (names of ``tmfast match`` options, Python spelling).
    extract
        Extraction options (names of ``tmfast extract`` options, Python spelling).
    slurm
        SLURM options the script was rendered with.
    entries
        One entry per tomogram; array index = position.
    """

    source: str
    source_path: str
    output_dir: str
    match: dict[str, Any]
    extract: dict[str, Any]
    slurm: dict[str, Any]
    entries: tuple[ManifestEntry, ...]
    tmfast_version: str = ""
    manifest_format_version: int = MANIFEST_FORMAT_VERSION

    @property
    def path(self) -> Path:
        """Default location of the manifest file in the batch folder."""
        return Path(self.output_dir) / "manifest.json"

    def entry(self, index: int) -> ManifestEntry:
        """Return the entry of array index ``index``.

        Raises
        ------
        ConfigError
            If ``index`` is outside the manifest.
        """
        from tmfast.errors import ConfigError

        if not 0 <= index < len(self.entries):
            raise ConfigError(
                f"array index {index} is outside the manifest "
                f"(0..{len(self.entries) - 1})"
            )
        return self.entries[index]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            "manifest_format_version": self.manifest_format_version,
            "tmfast_version": self.tmfast_version,
            "source": self.source,
            "source_path": self.source_path,
            "output_dir": self.output_dir,
            "match": self.match,
            "extract": self.extract,
            "slurm": self.slurm,
            "entries": [e.to_dict() for e in self.entries],
        }

    def to_json(self) -> str:
        """Return the manifest as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def write(
        self, path: str | os.PathLike[str] | None = None, *, overwrite: bool = False
    ) -> Path:
        """Write the manifest atomically (default: ``output_dir/manifest.json``)."""
        target = Path(path) if path is not None else self.path
        with atomic_path(target, overwrite=overwrite) as tmp:
            tmp.write_text(self.to_json())
        return target

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read a manifest written by :meth:`write`.

        ``path`` may also be the batch folder holding ``manifest.json``.

        Raises
        ------
        FormatError
            If the file is missing, not JSON, or not a tmfast manifest.
        """
        p = Path(path)
        if p.is_dir():
            if not (p / "manifest.json").is_file():
                raise FormatError(
                    f"{p}: folder holds no manifest.json; give the batch folder "
                    "written by 'tmfast batch plan' or its manifest.json"
                )
            p = p / "manifest.json"
        data = read_json(
            p, what="manifest", fix="run 'tmfast batch plan' first or check the path"
        )
        if not isinstance(data, dict) or "entries" not in data:
            raise FormatError(f"{p}: not a tmfast batch manifest (no 'entries')")
        version = int(data.get("manifest_format_version", MANIFEST_FORMAT_VERSION))
        if version > MANIFEST_FORMAT_VERSION:
            raise FormatError(
                f"{p}: manifest format {version} is newer than this tmfast reads "
                f"({MANIFEST_FORMAT_VERSION}); upgrade tmfast"
            )
        try:
            entries = tuple(ManifestEntry.from_dict(e) for e in data["entries"])
            return cls(
                source=data["source"],
                source_path=data["source_path"],
                output_dir=data["output_dir"],
                match=dict(data["match"]),
                extract=dict(data["extract"]),
                slurm=dict(data["slurm"]),
                entries=entries,
                tmfast_version=str(data.get("tmfast_version", "")),
                manifest_format_version=version,
            )
        except (KeyError, TypeError) as exc:
            raise FormatError(f"{p}: incomplete manifest ({exc})") from None
