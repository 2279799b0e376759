"""Dataset pushes: metadata, key indexes (a set of key hashes), uniqueness only when asked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelkeep.errors import InvalidInput, InvalidPath
from modelkeep.ml import _versionfiles
from modelkeep.ml.datasets import (
    decode_key_index,
    encode_key_index,
    hash_key,
    hash_keys,
    key_index_path,
    push_dataset,
    read_table,
)

CSV = "customer_id,amount,region,flag\n17,2.5,eu,true\n42,3.0,us,false\n17,4.25,eu,true\n"


def test_csv_push_records_rows_columns_and_a_key_set(reg, write):
    v = push_dataset(reg, write("t.csv", CSV), "transactions", key="customer_id", message="march")
    info = v.params["dataset"]
    assert v.kind.value == "dataset"
    assert info["rows"] == 3 and info["format"] == "csv"
    assert info["columns"] == {"customer_id": "int64", "amount": "float64", "region": "string", "flag": "bool"}
    key = info["keys"]["customer_id"]
    assert key == {"index": key_index_path("customer_id"), "distinct": 2, "unique": False, "scheme": "int"}
    assert dict(reg.files(v.ref)).keys() == {"t.csv", key["index"]}
    idx = decode_key_index(_versionfiles.read_bytes(reg, v.ref, key["index"]))
    assert idx.column == "customer_id" and idx.rows == 3 and not idx.unique
    assert len(idx.hashes) == 2 and np.all(np.diff(idx.hashes.astype(np.uint64)) > 0)
    assert idx.contains("17") and idx.contains("42")
    assert not idx.contains("18") and not idx.contains("017") and not idx.contains("abc")


def test_unique_key_refuses_duplicates_naming_them(reg, write):
    with pytest.raises(InvalidInput, match=r"key column 'customer_id' is not unique: 1 values appear more than once \('17' x2\)"):
        push_dataset(reg, write("t.csv", CSV), "transactions", key="customer_id", unique_key=True)
    with pytest.raises(InvalidInput, match="unique_key needs a key column"):
        push_dataset(reg, write("t.csv", CSV), "transactions", unique_key=True)
    v = push_dataset(reg, write("u.csv", "id,x\n1,2\n2,3\n"), "holdout", key="id", unique_key=True)
    assert v.params["dataset"]["keys"]["id"]["unique"] is True


def test_missing_key_column_and_bad_files(reg, write):
    with pytest.raises(InvalidInput, match=r"key column 'user' is not in t.csv \(columns: customer_id, amount, region, flag\)"):
        push_dataset(reg, write("t.csv", CSV), "transactions", key="user")
    with pytest.raises(InvalidInput, match="row 3 has 1 fields, the header has 2"):
        push_dataset(reg, write("bad.csv", "a,b\n1,2\n3\n"), "bad")
    with pytest.raises(InvalidInput, match="a key column needs a .csv or .parquet file"):
        push_dataset(reg, write("x.bin", b"\x00\x01"), "blob", key="id")
    with pytest.raises(InvalidInput, match="duplicate column names: a"):
        read_table(write("dup.csv", "a,a\n1,2\n"))


def test_text_keys_keep_leading_zeros_apart(reg, write):
    v = push_dataset(reg, write("t.csv", "id,x\n0123,1\n123,2\n"), "codes", key="id")
    assert v.params["dataset"]["keys"]["id"]["scheme"] == "str"
    idx = decode_key_index(_versionfiles.read_bytes(reg, v.ref, v.params["dataset"]["keys"]["id"]["index"]))
    assert idx.contains("0123") and idx.contains("123") and not idx.contains("23")


def test_directory_of_tables_indexes_every_file(reg, write):
    write("dir/a.csv", "customer_id,amount\n1,1.0\n2,2.0\n")
    d = write("dir/sub/b.csv", "customer_id,amount\n3,1.0\n").parent.parent
    v = push_dataset(reg, d, "parts", key="customer_id")
    info = v.params["dataset"]
    assert info["format"] == "directory" and info["rows"] == 3
    assert info["tables"] == {"a.csv": {"rows": 2}, "sub/b.csv": {"rows": 1}}
    idx = decode_key_index(_versionfiles.read_bytes(reg, v.ref, info["keys"]["customer_id"]["index"]))
    assert all(idx.contains(k) for k in ("1", "2", "3")) and not idx.contains("4")
    # pushing the pulled version again makes no new version: the stale index is rebuilt identically
    reg.pull(v.ref, d.parent / "pulled")
    again = push_dataset(reg, d.parent / "pulled", "parts", key="customer_id")
    assert again.version == v.version


def test_parquet_dataset(reg, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"customer_id": [5, 6, 7], "name": ["a", "b", None], "score": [0.5, 0.25, 1.0]})
    pq.write_table(table, tmp_path / "d.parquet")
    v = push_dataset(reg, tmp_path / "d.parquet", "pq", key="customer_id")
    info = v.params["dataset"]
    assert info["rows"] == 3 and info["format"] == "parquet"
    assert info["columns"] == {"customer_id": "int64", "name": "string", "score": "float64"}
    idx = decode_key_index(_versionfiles.read_bytes(reg, v.ref, info["keys"]["customer_id"]["index"]))
    assert idx.contains("6") and not idx.contains("8")


def test_key_index_format_is_checked():
    blob = encode_key_index("c", "int", hash_keys(np.array([3, 1, 3, 2]), "int"), rows=4, unique=False)
    idx = decode_key_index(blob)
    assert len(idx.hashes) == 3 and idx.rows == 4
    with pytest.raises(InvalidInput, match="do not match the file size"):
        decode_key_index(blob[:-8])
    with pytest.raises(InvalidInput, match="not a modelkeep key index"):
        decode_key_index(b"PAR1" + blob[4:])
    head = json.dumps({"column": "c"}).encode()
    with pytest.raises(InvalidInput, match="malformed header"):
        decode_key_index(blob[:8] + len(head).to_bytes(4, "little") + head)
    # one value hashes the same way alone and inside an array
    assert hash_key("2", "int") == int(hash_keys(np.array([2]), "int")[0])
    assert hash_key("x", "int") is None


def test_cli_push_with_key_then_show(mk, write):
    path = write("t.csv", CSV)
    r = mk("push", str(path), "transactions", "--kind", "dataset", "--key", "customer_id", "--json")
    version = json.loads(r.stdout)["version"]
    assert version["params"]["dataset"]["keys"]["customer_id"]["distinct"] == 2
    bad = mk("push", str(path), "tx2", "--key", "customer_id", "--unique-key", ok=False)
    assert bad.exit_code == 2 and "not unique" in bad.stderr
    # a later push of the same artifact without --kind is still described as a dataset
    write("t.csv", CSV + "99,1.0,us,false\n")
    r = mk("push", str(path), "transactions", "--json")
    assert json.loads(r.stdout)["version"]["params"]["dataset"]["rows"] == 4


def test_directory_symlinks_follow_the_push_rules(reg, write, tmp_path):
    write("outside.csv", "customer_id\n9\n")
    d = write("ds/a.csv", "customer_id\n1\n").parent
    (d / "inside.csv").symlink_to("a.csv")
    v = push_dataset(reg, d, "linked", key="customer_id")
    assert v.params["dataset"]["rows"] == 2 and dict(reg.files(v.ref))["inside.csv"] == len("customer_id\n1\n")
    (d / "leak.csv").symlink_to(tmp_path / "outside.csv")
    with pytest.raises(InvalidPath, match="symlinks pointing outside .* refused: leak.csv"):
        push_dataset(reg, d, "linked", key="customer_id")
