"""Files: where they are, how they are decoded and read into a raw table, and how a message names a row."""

from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import gzip
import hashlib
import io
import lzma
import zipfile
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import IO, Any, cast

import pandas as pd

from crmvalue.data.options import ReadOptions, missing_columns_error, other_delimiter
from crmvalue.errors import CrmvalueError, first_line

# Bundled datasets shipped inside the lifetimes wheel. Read through importlib.resources:
# `import lifetimes.datasets` needs pkg_resources, which setuptools >= 82 removed.
BUNDLED: dict[str, dict[str, Any]] = {
    "cdnow": {
        "file": "CDNOW_master.txt",
        "header": 0,
        "names": ["customer_id", "date", "quantity", "amount"],
    },
    "cdnow_sample": {
        "file": "CDNOW_sample.txt",
        "header": None,
        "names": ["customer_id", "sample_id", "date", "quantity", "amount"],
    },
}

_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".zip", ".xz"}
CSV_SUFFIXES = {".csv", ".txt", ".tsv"} | _COMPRESSION_SUFFIXES
PARQUET_SUFFIXES = {".parquet", ".pq"}


def bundled_path(name: str) -> Path:
    """Path of a bundled CDNOW file inside the installed lifetimes package."""
    if name not in BUNDLED:
        raise CrmvalueError(f"unknown bundled dataset '{name}'; choose one of {', '.join(BUNDLED)}")
    resource = files("lifetimes").joinpath("datasets", BUNDLED[name]["file"])
    path = Path(str(resource))
    if not path.is_file():
        raise CrmvalueError(f"bundled dataset '{name}' is missing from the lifetimes install at {path}")
    return path


def existing_file(source: str | Path) -> Path:
    path = Path(source)
    if not path.exists():
        raise CrmvalueError(f"{path}: no such file")
    if path.is_dir():
        raise CrmvalueError(f"{path}: is a directory, expected a .csv or .parquet file")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_separator(path: Path) -> str:
    """',' , or a tab for .tsv (also .tsv.gz and the like)."""
    suffix = path.suffix.lower()
    inner = path.suffixes[-2].lower() if suffix in _COMPRESSION_SUFFIXES and len(path.suffixes) > 1 else suffix
    return "\t" if inner == ".tsv" else ","


def csv_encoding(path: Path, given: str | None = None) -> str:
    """The given encoding, else UTF-16 or UTF-8 from a byte-order mark, else UTF-8."""
    if given is not None:
        name = codecs.lookup(given).name
        return "utf-8-sig" if name == "utf-8" else name  # a UTF-8 BOM is never part of the header
    try:
        with _open_binary(path) as fh:
            head = fh.read(4)
    except Exception:  # unreadable: the reader says why
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8-sig"


def read_file(path: Path, options: ReadOptions | None = None) -> tuple[pd.DataFrame, Callable[[int], str]]:
    """The raw table (every CSV column as text) and how to name its data row ``i`` in a message."""
    options = options or ReadOptions()
    suffix = path.suffix.lower()
    where: Callable[[int], str]
    if suffix in PARQUET_SUFFIXES:
        try:
            raw = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise CrmvalueError(f"{path}: cannot be read as Parquet ({_first_line(exc)})") from None
        where = parquet_row
    elif suffix in CSV_SUFFIXES:
        sep = options.sep or default_separator(path)
        encoding = csv_encoding(path, options.encoding)
        try:
            raw = pd.read_csv(
                path,
                sep=sep,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                skipinitialspace=True,
                encoding=encoding,
            )
        except pd.errors.EmptyDataError:
            raise CrmvalueError(f"{path}: the file is empty") from None
        except UnicodeError as exc:
            raise encoding_error(path, encoding, _first_line(exc)) from None
        except (
            pd.errors.ParserError,
            ValueError,
            OSError,
            EOFError,  # truncated .gz/.bz2/.xz
            zipfile.BadZipFile,
            lzma.LZMAError,
        ) as exc:
            header = header_line(path, encoding)
            if header is not None and other_delimiter(header, sep) is not None:
                raise missing_columns_error(str(path), [], [], options, header, sep) from None
            raise CrmvalueError(f"{path}: cannot be read as CSV ({_first_line(exc)})") from None
        where = csv_line_locator(path, sep, encoding)
    else:
        raise CrmvalueError(f"{path}: unsupported format '{suffix or path.name}'; use .csv or .parquet")
    if raw.empty:
        raise CrmvalueError(f"{path}: the file has no data rows")
    return raw, where


def encoding_error(path: Path, encoding: str, reason: str) -> CrmvalueError:
    """Text that does not decode; for UTF-8 the first line that does not, the same for both engines."""
    utf8 = encoding in ("utf-8", "utf-8-sig")
    if utf8:
        reason = _first_undecodable_line(path) or reason
    return CrmvalueError(
        f"{path}: cannot be read as CSV ({reason}): it is not {'UTF-8' if utf8 else encoding} text; set its "
        "encoding with --encoding, e.g. --encoding latin-1 or --encoding cp1252"
    )


def _first_undecodable_line(path: Path) -> str | None:
    try:
        with _open_binary(path) as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return f"line {number} has the byte 0x{line[exc.start]:02x}"
    except Exception:  # only for the message
        return None
    return None


def header_line(path: Path, encoding: str = "utf-8-sig") -> str | None:
    """The first non-blank line of a text file, or None if it cannot be read."""
    try:
        with open_text(path, encoding) as fh:
            for line in fh:
                if line.strip():
                    return line.rstrip("\r\n")
    except Exception:  # only for a hint in a message
        return None
    return None


def _first_line(exc: BaseException) -> str:
    return first_line(exc, limit=None)


def parquet_row(i: int) -> str:
    return f"row {i} (counting from 0)"


def csv_line_locator(path: Path, sep: str, encoding: str = "utf-8-sig") -> Callable[[int], str]:
    """Name data row ``i`` by the line of the file it starts on.

    Only called on the error path, so it rereads the file: blank lines (which pandas skips)
    and quoted fields holding line breaks make ``i + 2`` wrong.
    """

    def where(i: int) -> str:
        try:
            line = _csv_record_line(path, sep, i, encoding)
        except Exception:  # the line number is a courtesy; never hide the real error behind it
            line = None
        return f"line {line}" if line is not None else f"data row {i + 1}"

    return where


@contextlib.contextmanager
def _open_binary(path: Path) -> Iterator[IO[bytes]]:
    """The decompressed bytes of a (possibly compressed) file."""
    suffix = path.suffix.lower()
    fh: IO[bytes]  # the compressed readers are binary files too, typed apart
    with contextlib.ExitStack() as stack:
        if suffix == ".gz":
            fh = stack.enter_context(cast(IO[bytes], gzip.open(path, "rb")))
        elif suffix == ".bz2":
            fh = stack.enter_context(cast(IO[bytes], bz2.open(path, "rb")))
        elif suffix == ".xz":
            fh = stack.enter_context(cast(IO[bytes], lzma.open(path, "rb")))
        elif suffix == ".zip":
            archive = stack.enter_context(zipfile.ZipFile(path))
            (member,) = archive.namelist()  # pandas reads a zip of exactly one file
            fh = stack.enter_context(archive.open(member))
        else:
            fh = stack.enter_context(open(path, "rb"))
        yield fh


@contextlib.contextmanager
def open_text(path: Path, encoding: str = "utf-8-sig", errors: str = "replace") -> Iterator[io.TextIOBase]:
    with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding=encoding, errors=errors, newline="") as fh:
        yield fh


def _csv_record_line(path: Path, sep: str, i: int, encoding: str = "utf-8-sig") -> int | None:
    """The 1-based line on which data record ``i`` starts, counting records as pandas does."""
    with open_text(path, encoding) as fh:
        reader = csv.reader(fh, delimiter=sep, skipinitialspace=True)
        end = 0  # the line the previous record ended on
        record_no = -1  # -1 is the header
        for record in reader:
            start, end = end + 1, reader.line_num
            if len(record) <= 1 and not "".join(record).strip():
                continue  # a blank line: pandas skips it
            if record_no == i:
                return start
            record_no += 1
    return None
