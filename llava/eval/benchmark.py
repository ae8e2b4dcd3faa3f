"""Reading VLMEvalKit-format TSV benchmarks (and prediction files in the same layout, also as .xlsx).

Columns: `index`, `question`, option columns `A` `B` ..., `answer`, optional `hint`, `category`,
`l2-category`, `split`, and `image`: base64 image data, or a short string (64 characters at most)
naming the `index` of another row that holds the image. Prediction files add `prediction`.

Bad rows never stop a run: each problem becomes a message on the row (`BenchmarkItem.issues`);
the runner and the scorer log one line per bad row, naming its row number and index, and count
that row as wrong. Only a file that is missing, unreadable or has no header raises
`BenchmarkFileError`.

Pair key. `BenchmarkItem.image_key` is the index of the first row that holds the item's image:
rows whose `image` names the same row, or carries the same base64 data, share one key. The MMMB
pair rule scores the rows sharing a key together (an image's two questions). Prediction files
written by this package carry it in an `image_index` column, since they drop the bulky `image`.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import logging
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from llava.eval.languages import detect_language, normalize_language
from llava.image_limits import ImageShapeError, check_image_shape

logger = logging.getLogger(__name__)

OPTION_LETTERS = string.ascii_uppercase
IMAGE_REF_MAX_CHARS = 64  # VLMEvalKit's limit: a longer `image` cell is image data
PAIR_KEY_COLUMN = "image_index"
CSV_ERROR_MARK = "\0csv error: "  # stands in for a line the csv module rejected
# Cells pandas (and so VLMEvalKit) reads as NaN: an option or hint holding one of these is absent.
MISSING_VALUES = frozenset("nan NaN -nan -NaN None null NULL NA N/A n/a <NA> #N/A".split()) | {""}

BENCHMARK_LANGUAGE_SUFFIXES = ("en", "cn", "pt", "ar", "tr", "ru")
BENCHMARK_FAMILIES = {
    "mmmb": "MMMB",
    "mmbench_dev": "MMBench_dev",
    "mmbench": "MMBench_dev",
    "mtl_mmbench_dev": "MMBench_dev",
}
# The general benchmarks of the paper's radar chart, by VLMEvalKit's file names. MMBench-CN is the
# Chinese file of the MMBench family (`MMBench_dev_cn.tsv`, VLMEvalKit's MMBench_DEV_CN.tsv).
GENERAL_FILES = {
    "mme": "MME",
    "mmstar": "MMStar",
    "seedbench_img": "SEEDBench_IMG",
    "seed-bench-img": "SEEDBench_IMG",
    "scienceqa_img": "ScienceQA_TEST",
    "scienceqa_test": "ScienceQA_TEST",
    "realworldqa": "RealWorldQA",
    "mmbench_cn": "MMBench_dev_cn",
}
GENERAL_SET = ("MMBench_dev_cn", "MME", "MMStar", "ScienceQA_TEST", "SEEDBench_IMG", "RealWorldQA")
KINDS = ("mcq", "yorn")


def benchmark_kind(name: str) -> str:
    """`yorn` (yes/no questions, no options) for MME files, else `mcq`."""
    return "yorn" if re.search(r"(?:^|[^a-z])mme(?:$|[^a-z])", name.lower()) else "mcq"


csv.field_size_limit(2**31 - 1)  # base64 image cells exceed the default 128 KiB limit


class BenchmarkFileError(Exception):
    """A benchmark or predictions file that cannot be read at all."""


class ImageLoadError(Exception):
    """An item whose image cannot be decoded; the message names the file and row, `reason` says why."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.reason = reason


@dataclass
class BenchmarkItem:
    """One row of a benchmark TSV."""

    row: int  # 1-based data row number in the file (the header is row 0)
    key: str  # the raw `index` cell, stripped: identifies the row in prediction files
    index: int | None  # None when the `index` cell is not an integer
    fields: dict[str, str]  # every column except `image`, as read
    options: dict[str, str]  # letter -> option text, present options only, in letter order
    image_key: int | None = None
    issues: list[str] = field(default_factory=list)

    def get(self, column: str) -> str | None:
        """The cell of `column`, or None when absent or empty (`l2-category` also reads MMStar's
        `l2_category`)."""
        value = self.fields.get(column, "")
        if column == "l2-category" and not value.strip():
            value = self.fields.get("l2_category", "")
        return None if value.strip() in MISSING_VALUES else value

    @property
    def question(self) -> str:
        return self.fields.get("question", "")

    @property
    def hint(self) -> str | None:
        return self.get("hint")

    @property
    def answer(self) -> str | None:
        value = self.get("answer")
        return value.strip() if value is not None else None

    @property
    def prediction(self) -> str:
        return self.fields.get("prediction", "")

    def describe(self) -> str:
        """`row 3 (index 12)`: how messages name this row."""
        return f"row {self.row} (index {self.key or '?'})"


@dataclass
class Benchmark:
    """A benchmark (or predictions) file: its items and where their images live."""

    name: str
    path: Path
    language: str
    columns: list[str]
    items: list[BenchmarkItem]
    images: dict[int, str] = field(default_factory=dict, repr=False)  # image_key -> base64 data
    kind: str = "mcq"  # `mcq` (lettered options) or `yorn` (yes/no, MME)

    @property
    def has_images(self) -> bool:
        return "image" in self.columns

    def load_image(self, item: BenchmarkItem) -> Image.Image:
        """Decode the item's image as RGB; ImageLoadError names the row when it cannot, or when its
        shape would blow up in preprocessing (`check_image_shape`, checked before decoding; the
        stricter pad rule, as the model's aspect mode is not known here)."""
        data = self.images.get(item.image_key) if item.image_key is not None else None
        if data is None:
            raise ImageLoadError(f"{self.path.name} {item.describe()}", "no image data for this row")
        try:
            raw = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError) as err:
            raise ImageLoadError(
                f"{self.path.name} {item.describe()}: image cell is not valid base64 ({err})"
            ) from err
        try:
            with Image.open(io.BytesIO(raw)) as image:
                check_image_shape(image.size)
                return image.convert("RGB")
        except ImageShapeError as err:
            raise ImageLoadError(f"{self.path.name} {item.describe()}", f"image {err}") from err
        except (UnidentifiedImageError, OSError) as err:
            reason = "not a readable image" if isinstance(err, UnidentifiedImageError) else str(err)
            raise ImageLoadError(f"{self.path.name} {item.describe()}", f"image data is {reason}") from err


def read_benchmark(
    path: str | Path, *, name: str | None = None, language: str | None = None, kind: str | None = None
) -> Benchmark:
    """Read a VLMEvalKit-format TSV; `name` defaults to the file stem, `language` is detected, `kind`
    defaults to `benchmark_kind(name)` (a `yorn` row needs no options).

    Raises BenchmarkFileError naming the file when it is missing, unreadable or empty.
    """
    path = Path(path)
    rows = _read_rows(path)
    header = [column.strip() for column in rows[0]]
    name = name or path.stem
    kind = kind or benchmark_kind(name)
    if kind not in KINDS:
        raise ValueError(f"unknown benchmark kind {kind!r}; use one of {', '.join(KINDS)}")
    for required in ("index", "question"):
        if required not in header:
            logger.warning("%s has no %r column: every row will be scored wrong", path, required)
    items = [_parse_row(header, cells, row_number, kind) for row_number, cells in enumerate(rows[1:], start=1)]
    _mark_duplicate_indices(items)
    images = _resolve_images(header, rows[1:], items) if "image" in header else {}
    if "image" not in header and PAIR_KEY_COLUMN in header:
        for item in items:
            item.image_key = _parse_int(item.fields.get(PAIR_KEY_COLUMN, ""))
    if language is None:
        language = detect_language(name, [item.question for item in items[:50]])
    else:
        language = normalize_language(language)
    return Benchmark(
        name=name, path=path, language=language, columns=header, items=items, images=images, kind=kind
    )


def _read_rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise BenchmarkFileError(
            f"benchmark file {path} does not exist: check the path, --files or --data-root"
        )
    rows = _read_xlsx_rows(path) if path.suffix.lower() == ".xlsx" else _read_tsv_rows(path)
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise BenchmarkFileError(f"benchmark file {path} is empty or has no header row")
    return rows


def _read_tsv_rows(path: Path) -> list[list[str]]:
    rows: list[list[str]] = []
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t")
            while True:
                try:
                    rows.append(next(reader))
                except StopIteration:
                    break
                except csv.Error as err:  # keep the row count so later row numbers stay right
                    rows.append([f"{CSV_ERROR_MARK}{err}"])
    except (OSError, UnicodeDecodeError) as err:
        raise BenchmarkFileError(f"cannot read benchmark file {path}: {err}") from err
    return rows


def _xlsx_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_xlsx_rows(path: Path) -> list[list[str]]:
    """Rows of the first sheet of an .xlsx file (VLMEvalKit's default predictions format)."""
    try:
        import openpyxl
    except ImportError as err:
        raise BenchmarkFileError(
            f"{path} is an .xlsx file, which needs openpyxl: pip install openpyxl (or save it as TSV)"
        ) from err
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises many unrelated types for a damaged file
        raise BenchmarkFileError(f"cannot read benchmark file {path}: {err}") from err
    try:
        return [
            [_xlsx_cell(value) for value in row] for row in workbook.worksheets[0].iter_rows(values_only=True)
        ]
    finally:
        workbook.close()


def _parse_int(text: str) -> int | None:
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _parse_row(header: list[str], cells: list[str], row_number: int, kind: str = "mcq") -> BenchmarkItem:
    issues: list[str] = []
    if len(cells) == 1 and cells[0].startswith(CSV_ERROR_MARK):
        issues.append(f"malformed TSV line ({cells[0].removeprefix(CSV_ERROR_MARK)})")
        cells = []
    elif len(cells) != len(header):
        issues.append(f"malformed TSV line: {len(cells)} fields where the header has {len(header)}")
    cells = (cells + [""] * len(header))[: len(header)]
    fields = {column: cell for column, cell in zip(header, cells) if column != "image"}
    key = fields.get("index", "").strip()
    index = _parse_int(key)
    if "index" not in header:
        issues.append("missing column 'index'")
    elif index is None:
        issues.append(f"index {key!r} is not an integer")
    if "question" not in header:
        issues.append("missing column 'question'")
    elif not fields["question"].strip():
        issues.append("empty question")
    options = {
        letter: fields[letter].strip()
        for letter in OPTION_LETTERS
        if letter in fields and fields[letter].strip() not in MISSING_VALUES
    }
    if kind == "mcq" and len(options) < 2:
        issues.append(f"has {len(options)} option(s); a multiple-choice row needs columns A, B, ...")
    return BenchmarkItem(row=row_number, key=key, index=index, fields=fields, options=options, issues=issues)


def _mark_duplicate_indices(items: list[BenchmarkItem]) -> None:
    seen: set[int] = set()
    for item in items:
        if item.index is None:
            continue
        if item.index in seen:
            item.issues.append(f"duplicate index {item.index}")
        seen.add(item.index)


def _resolve_images(header: list[str], rows: list[list[str]], items: list[BenchmarkItem]) -> dict[int, str]:
    """Fill `item.image_key` for every row; return image_key -> base64 data of the owning rows."""
    column = header.index("image")
    cells = [row[column].strip() if column < len(row) else "" for row in rows]
    owner_by_data: dict[str, int] = {}
    owner_by_index: dict[int, int] = {}
    images: dict[int, str] = {}
    for item, cell in zip(items, cells):
        if len(cell) > IMAGE_REF_MAX_CHARS and item.index is not None:
            item.image_key = owner_by_data.setdefault(cell, item.index)
            owner_by_index.setdefault(item.index, item.image_key)
            images.setdefault(item.image_key, cell)
    for item, cell in zip(items, cells):
        if len(cell) > IMAGE_REF_MAX_CHARS:
            continue
        if not cell:
            item.issues.append("empty image cell")
            continue
        target = _parse_int(cell)
        if target is None or target not in owner_by_index:
            item.issues.append(f"image {cell!r} names no row holding image data")
            continue
        item.image_key = owner_by_index[target]
    return images


def benchmark_stems(name: str) -> list[str]:
    """The file stems a `--benchmark` name stands for (see `expand_benchmark`)."""
    lowered = name.lower()
    if lowered == "general":
        return list(GENERAL_SET)
    if lowered == "paper":
        return [*benchmark_stems("MMMB"), *benchmark_stems("MMBench_dev"), *GENERAL_SET[1:]]
    family = BENCHMARK_FAMILIES.get(lowered)
    if family:
        return [f"{family}_{suffix}" for suffix in BENCHMARK_LANGUAGE_SUFFIXES]
    return [GENERAL_FILES.get(lowered, name)]


def expand_benchmark(name: str, data_root: str | Path) -> list[Path]:
    """Paths of a benchmark's TSV files in `data_root` or any folder below it.

    `MMMB` expands to MMMB_{en,cn,pt,ar,tr,ru}.tsv and `MMBench_dev` (or `MMBench`,
    `MTL_MMBench_DEV`) to MMBench_dev_{...}.tsv; `MME`, `MMStar`, `SEEDBench_IMG`,
    `ScienceQA_IMG` (ScienceQA_TEST.tsv), `RealWorldQA` and `MMBench_CN` (MMBench_dev_cn.tsv) to
    VLMEvalKit's file; `general` to the paper's six general benchmarks and `paper` to the whole set
    (MMMB, the six-language MMBench and the general ones). A single file's name (`MMMB_cn`) gives
    that file. Names match case-insensitively (the released files are lower case: mmmb_cn.tsv).
    Raises BenchmarkFileError listing the files it looked for when any is missing, or naming both
    paths when a name is found twice.
    """
    root = Path(data_root)
    if not root.is_dir():
        raise BenchmarkFileError(f"--data-root {root} is not a directory")
    available: dict[str, list[Path]] = {}
    for entry in sorted(root.rglob("*.tsv")):
        if entry.is_file():
            available.setdefault(entry.name.lower(), []).append(entry)
    paths, missing = [], []
    for stem in benchmark_stems(name):
        candidate = stem if stem.lower().endswith(".tsv") else f"{stem}.tsv"
        found = available.get(candidate.lower(), [])
        if not found:
            missing.append(candidate)
        elif len(found) > 1:
            raise BenchmarkFileError(
                f"benchmark {name!r}: {candidate} is in {root} twice ({found[0]} and {found[1]}); "
                "keep one, or pass the files with --files"
            )
        else:
            paths.append(found[0])
    if missing:
        raise BenchmarkFileError(
            f"benchmark {name!r}: {', '.join(missing)} not found in {root}; download the TSV files there "
            "(docs/evaluation_data.md) or pass them with --files"
        )
    return paths
