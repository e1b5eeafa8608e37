"""Which data sets exist, found by name without loading them.

The registry scans sktime's shipped data directory, so every UCR/UEA ``.ts`` problem and every
CSV series sktime installs is usable, plus scikit-learn's 8x8 digits. Names match
case-insensitively, ignoring underscores, hyphens and spaces: ``JapaneseVowels``,
``japanese_vowels`` and ``japanesevowels`` are one data set.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tuner.objectives.data._types import DataKind

# CSV series sktime ships: folder/file -> (data set name, target column). Files not listed here
# are still registered, with their last numeric column as the target.
_CSV_TARGETS: dict[str, tuple[str, str]] = {
    "Airline/Airline.csv": ("airline", "Passengers"),
    "Lynx/Lynx.csv": ("lynx", "0"),
    "ShampooSales/ShampooSales.csv": ("shampoo_sales", "Sales"),
    "Longley/Longley.csv": ("longley", "TOTEMP"),
    "PBS_dataset/PBS_dataset.csv": ("pbs_dataset", "Scripts"),
    "Uschange/Uschange.csv": ("uschange", "Consumption"),
    "seatbelts/seatbelts.csv": ("seatbelts", "KSI"),
    "solar/solar.csv": ("solar", "solar_gen"),
    "mitdb/mitdb.csv": ("mitdb", "data"),
    "yahoo/yahoo.csv": ("yahoo", "data"),
    "segmentation/GunPoint.csv": ("gun_point_segmentation", "1"),
    "segmentation/ElectricDevices.csv": ("electric_devices_segmentation", "1"),
}
_HEADERLESS = {"segmentation"}  # these CSVs are "index,value" rows without a header


def normalise(name: str) -> str:
    """The matching key of a data set name: lower case without ``_``, ``-`` or spaces."""
    return "".join(ch for ch in name.lower() if ch not in "_- ")


@dataclass(frozen=True)
class DatasetInfo:
    """A data set's identity and shape, known without loading it.

    ``path`` is the ``.ts`` file prefix (``.../GunPoint/GunPoint``), the CSV or ``.tsf`` file;
    ``column`` the CSV target column; ``channels`` the features per step (1 for series);
    ``length`` the series length (the longest one for unequal-length problems).
    """

    name: str
    kind: DataKind
    path: Path | None
    channels: int
    length: int
    column: str | None = None
    equal_length: bool = True

    @property
    def task(self) -> str:
        if self.kind in (DataKind.SEQUENCE, DataKind.IMAGE):
            return "classification"
        return "forecasting"


def sktime_data_dir() -> Path:
    """The folder of data files installed with sktime (nothing here is downloaded)."""
    spec = importlib.util.find_spec("sktime")  # locate without importing (importing is slow)
    if spec is None or not spec.submodule_search_locations:
        return Path("/nonexistent-sktime")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def _ts_header(path: Path) -> tuple[DataKind, int, bool]:
    """Kind, channel count and equal-length flag read from a ``.ts`` header (first lines only)."""
    kind, channels, equal = DataKind.SEQUENCE, 1, True
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            words = line.strip().lower().split()
            if not words or not words[0].startswith("@"):
                continue
            key = words[0]
            if key == "@data":
                break
            if key == "@dimensions" and len(words) > 1:
                channels = int(words[1])
            elif key == "@equallength" and len(words) > 1:
                equal = words[1] == "true"
            elif key == "@targetlabel" and len(words) > 1 and words[1] == "true":
                kind = DataKind.SERIES_REGRESSION
    return kind, channels, equal


def _ts_max_length(path: Path) -> int:
    """The longest series of a ``.ts`` file, counted from its first channel."""
    longest, in_data = 0, False
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if not in_data:
                in_data = line.strip().lower() == "@data"
                continue
            if line.strip():
                longest = max(longest, line.split(":", 1)[0].count(",") + 1)
    return longest


def _csv_info(path: Path, column: str | None, headerless: bool) -> tuple[str, int]:
    """The target column (named or the last numeric one) and the number of rows of a CSV."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if headerless:
        return column or "1", len(rows)
    header, body = rows[0], rows[1:]
    if column is None:
        numeric = [h for i, h in enumerate(header) if body and _is_number(body[0][i])]
        numeric = [h for h in numeric if h.lower() != "label"] or numeric
        column = numeric[-1]
    return column, len(body)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, DatasetInfo]:
    """Every available data set by normalised name, built once per process."""
    found: dict[str, DatasetInfo] = {}
    root = sktime_data_dir()
    for train in sorted(root.glob("*/*_TRAIN.ts")):
        name = train.name[: -len("_TRAIN.ts")]
        kind, channels, equal = _ts_header(train)
        length = max(_ts_max_length(train), _ts_max_length(train.with_name(f"{name}_TEST.ts")))
        prefix = train.with_name(name)
        found[normalise(name)] = DatasetInfo(name, kind, prefix, channels, length, None, equal)
    for csv_path in sorted(root.glob("*/*.csv")):
        rel = f"{csv_path.parent.name}/{csv_path.name}"
        name, column = _CSV_TARGETS.get(rel, (f"{csv_path.parent.name}_{csv_path.stem}", None))
        column, rows = _csv_info(csv_path, column, csv_path.parent.name in _HEADERLESS)
        if normalise(name) not in found:
            found[normalise(name)] = DatasetInfo(name, DataKind.SERIES, csv_path, 1, rows, column)
    for tsf in sorted(root.glob("*/*.tsf")):
        name = f"{tsf.stem}_tsf" if tsf.stem == tsf.parent.name else tsf.stem
        length = _tsf_length(tsf)
        found.setdefault(normalise(name), DatasetInfo(name, DataKind.SERIES, tsf, 1, length))
    found["digits"] = DatasetInfo("digits", DataKind.IMAGE, None, 8, 8)
    return found


def _tsf_length(path: Path) -> int:
    """Length of the first series of a Monash ``.tsf`` file (the one tuner forecasts)."""
    in_data = False
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if not in_data:
                in_data = line.strip().lower() == "@data"
            elif line.strip():
                return line.rsplit(":", 1)[1].count(",") + 1
    return 0


def available(task: str | None = None) -> list[str]:
    """Canonical names of the data sets usable for ``task`` (all when ``None``), sorted."""
    infos = registry().values()
    return sorted((i.name for i in infos if task is None or i.task == task), key=str.lower)


def lookup(name: str) -> DatasetInfo | None:
    """The data set called ``name`` (any case, ``_``/``-`` ignored), or ``None``."""
    return registry().get(normalise(name))
