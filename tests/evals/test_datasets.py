"""Dataset files read into rows: their lines, ids and values, and every way a file can be wrong, named by line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.evals.datasets import DatasetError, Row, read_rows, row_id


def rows(tmp_path: Path, name: str, content: str | bytes) -> list[Row]:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return read_rows(path)


def test_jsonl_rows_their_lines_and_ids(tmp_path: Path) -> None:
    got = rows(tmp_path, "t.ndjson", '\n{"id": "a", "x": 1}\n  \n{"x": 2}\n{"id": 7, "x": 3}\n{"id": "", "x": 4}\n')
    assert got == [
        Row(2, "a", {"x": 1}),
        Row(4, row_id("t", {"x": 2}), {"x": 2}),
        Row(5, "7", {"x": 3}),
        Row(6, row_id("t", {"id": "", "x": 4}), {"x": 4}),  # an empty id is no id
    ]
    canonical = '{"a":[1,"é"],"b":1}'.encode()  # keys sorted, compact, UTF-8
    expected = f"t-{hashlib.sha256(canonical).hexdigest()[:8]}"
    assert row_id("t", {"b": 1, "a": [1, "é"]}) == row_id("t", {"a": [1, "é"], "b": 1}) == expected


def test_csv_rows_their_lines_and_values(tmp_path: Path) -> None:
    got = rows(tmp_path, "t.csv", '\ufeffid, q ,n\n\nfirst,"two\nlines",1\n,c,\n\n\nlast,d,2\n')
    assert got == [
        Row(3, "first", {"q": "two\nlines", "n": "1"}),  # a BOM and spaces around header names are dropped
        Row(5, row_id("t", {"id": "", "q": "c", "n": ""}), {"q": "c", "n": ""}),
        Row(8, "last", {"q": "d", "n": "2"}),
    ]


def test_yaml_and_json_rows_their_lines(tmp_path: Path) -> None:
    assert rows(tmp_path, "t.yml", "# rows\n- {id: a, x: 1}\n-\n  x: 2\n  id: b\n") == [
        Row(2, "a", {"x": 1}), Row(4, "b", {"x": 2})]  # fmt: skip  # a block mapping starts at its first key
    assert rows(tmp_path, "t.JSON", '[{"x": 1},\n {"x": 2}]') == [
        Row(1, row_id("t", {"x": 1}), {"x": 1}), Row(2, row_id("t", {"x": 2}), {"x": 2})]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "message", "line"),
    [
        ("t.txt", "x", "unsupported dataset format '.txt': use .jsonl, .csv or .yaml", None),
        ("t", "x", "unsupported dataset format '(no suffix)': use .jsonl, .csv or .yaml", None),
        ("t.csv", b"a\n\xff\n", "cannot read the dataset: 'utf-8' codec can't decode byte 0xff in position 2: "
                               "invalid start byte", None),
        ("t.jsonl", "", "the dataset has no rows", None),
        ("t.csv", "", "the dataset has no rows", None),
        ("t.csv", "a,b\n", "the dataset has no rows", None),
        ("t.yaml", "# nothing\n", "the dataset has no rows", None),
        ("t.yaml", "[]", "the dataset has no rows", None),
        ("t.jsonl", '{"a": 1}\n{"a": }\n', "invalid JSON (Expecting value: line 1 column 7 (char 6))", 2),
        ("t.jsonl", '{"a": 1}\nnull\n', "a row must be a mapping of field: value, got null", 2),
        ("t.jsonl", '"text"\n', "a row must be a mapping of field: value, got str", 1),
        ("t.jsonl", '{"id": "a"}\n{"id": "b"}\n{"id": "a"}\n', "duplicate case id 'a', first at line 1", 3),
        ("t.jsonl", '{"x": 1}\n{"x": 1}\n', f"duplicate case id '{row_id('t', {'x': 1})}', first at line 1 "
                                           "(the rows are identical: give them an id field)", 2),
        ("t.jsonl", '{"id": [1]}\n', "the id field must be a non-empty string or a number, got list", 1),
        ("t.jsonl", '{"id": false}\n', "the id field must be a non-empty string or a number, got bool", 1),
        ("t.jsonl", '{"id": " "}\n', "the id field must be a non-empty string or a number, got str", 1),
        ("t.csv", "a,,b\n1,2,3\n", "the header row has an empty column name", 1),
        ("t.csv", "a,b,a\n1,2,3\n", "the header row names column 'a' twice", 1),
        ("t.csv", "a,b\n1,2\n\n\"x\ny\",2\n3\n", "1 cells but the header has 2 columns", 6),
        ("t.csv", "a,b\n1,2,3\n", "3 cells but the header has 2 columns", 2),
        ("t.csv", "a,b\n1,2\n\"" + "x" * 140_000 + "\",2\n", "invalid CSV (field larger than field limit (131072))", 3),
        ("t.yaml", "- a: 1\n- [b\n", "invalid YAML (did not find expected ',' or ']')", 3),
        ("t.yaml", "a: 1\n", "expected a list of rows (mappings), got dict", 1),
    ],
)  # fmt: skip
def test_a_bad_dataset_names_the_line(tmp_path: Path, name: str, content: str | bytes, message: str,
                                      line: int | None) -> None:  # fmt: skip
    with pytest.raises(DatasetError) as caught:
        rows(tmp_path, name, content)
    assert (caught.value.message, caught.value.line, str(caught.value)) == (message, line, message)


def test_a_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="^no such dataset file$"):
        read_rows(tmp_path / "gone.jsonl")
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(DatasetError, match=r"^cannot read the dataset: \[Errno 21\] Is a directory"):
        read_rows(tmp_path / "dir.jsonl")
