from __future__ import annotations

import pytest

from modelkeep.errors import InvalidName, InvalidRef
from modelkeep.registry.names import RefKind, VersionRef, check_alias, check_name, check_tag_key, namespace_of


@pytest.mark.parametrize("name", ["fraud", "team/fraud-detector", "a", "x1/y_2.v3", "0abc", "a" * 64 + "/" + "b" * 64])
def test_good_artifact_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "is empty"),
        ("Fraud", "outside the rule"),
        ("team/", "is empty"),
        ("/fraud", "is empty"),
        ("a/b/c", "at most one '/'"),
        ("-fraud", "outside the rule"),
        (".hidden", "outside the rule"),
        ("a..b", "contains '..'"),
        ("team/a b", "outside the rule"),
        ("a" * 65, "longer than 64"),
        ("fraud@1.0.0", "outside the rule"),
    ],
)
def test_bad_artifact_names(name: str, why: str) -> None:
    with pytest.raises(InvalidName, match=why):
        check_name(name)


def test_namespace() -> None:
    assert namespace_of("team/fraud") == "team"
    assert namespace_of("fraud") is None


@pytest.mark.parametrize("alias", ["production", "staging", "champion-2", "2024-q1", "v-next"])
def test_good_aliases(alias: str) -> None:
    assert check_alias(alias) == alias


@pytest.mark.parametrize("alias", ["latest", "1", "v2", "1.4", "1.4.0", "v1.4.0", "1.4.0-rc1", "blake3", "blake3abc"])
def test_reserved_aliases(alias: str) -> None:
    with pytest.raises(InvalidName, match="reserved"):
        check_alias(alias)


@pytest.mark.parametrize("alias", ["Prod", "", "a/b", "x" * 65, "a..b"])
def test_malformed_aliases(alias: str) -> None:
    with pytest.raises(InvalidName, match="invalid alias name"):
        check_alias(alias)


def test_tag_keys() -> None:
    assert check_tag_key("approved-by") == "approved-by"
    with pytest.raises(InvalidName, match="invalid tag key"):
        check_tag_key("Approved By")


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("team/fraud@1.4.0", RefKind.SEMVER, "1.4.0"),
        ("team/fraud@v1.4.0", RefKind.SEMVER, "1.4.0"),
        ("team/fraud@blake3:abcdef12", RefKind.DIGEST, "abcdef12"),
        ("team/fraud@production", RefKind.ALIAS, "production"),
        ("team/fraud@latest", RefKind.LATEST, "latest"),
        ("team/fraud", RefKind.LATEST, "latest"),
    ],
)
def test_refs_parse(text: str, kind: RefKind, value: str) -> None:
    ref = VersionRef.parse(text)
    assert (ref.artifact, ref.kind, ref.value) == ("team/fraud", kind, value)
    assert VersionRef.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("fraud@", "nothing after '@'"),
        ("fraud@blake3:abc", "6 to 64 hex digits"),
        ("fraud@blake3:ABCDEF12", "lowercase hex"),
        ("fraud@blake3xyz", "lowercase hex"),
        ("fraud@1.4", "not a version"),
        ("fraud@1.4.0-rc1", "not a version"),
        ("fraud@Prod", "invalid alias name"),
        ("fraud@a@b", "invalid alias name"),
    ],
)
def test_bad_refs(text: str, why: str) -> None:
    with pytest.raises(InvalidRef, match=why):
        VersionRef.parse(text)


def test_bad_name_in_ref_is_invalid_name() -> None:
    with pytest.raises(InvalidName):
        VersionRef.parse("Team/Fraud@1.0.0")
