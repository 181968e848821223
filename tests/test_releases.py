from __future__ import annotations

from deploy.releases import id_time, new_id, parse, valid_id


def test_new_id_is_utc_timestamp_plus_revision() -> None:
    rid = new_id("abc1234", now=0)
    assert rid == "19700101T000000Z-abc1234" and valid_id(rid)
    assert new_id("abc1234", now=0, taken=(rid,)) == "19700101T000001Z-abc1234"


def test_new_id_sorts_after_every_release_on_the_host() -> None:
    # Another revision deployed in the same second must still sort after it (ids order rollbacks).
    assert new_id("0000000", now=5, taken=("19700101T000005Z-fffffff",)) == "19700101T000006Z-0000000"
    assert new_id("abc", now=5, taken=("19700101T000009Z-abc", "19700101T000001Z-x")) == "19700101T000010Z-abc"
    assert new_id("abc", now=5, taken=("19700101T000001Z-x",)) == "19700101T000005Z-abc"


def test_invalid_ids() -> None:
    for bad in ("../../etc", "", "20260101T000000Z-abc/..", "x"):
        assert not valid_id(bad)


def test_parse_listing() -> None:
    listing = parse(
        [
            "@@current 20260102T000000Z-b",
            "@@release 20260102T000000Z-b finished bbb",
            "@@release 20260101T000000Z-a finished aaa",
            "@@release ../x finished zzz",
            "noise",
        ]
    )
    assert listing.current == "20260102T000000Z-b"
    assert [r.id for r in listing.releases] == ["20260101T000000Z-a", "20260102T000000Z-b"]
    assert listing.get("20260101T000000Z-a").finished  # type: ignore[union-attr]


def test_id_time_round_trip() -> None:
    assert id_time(new_id("abc", now=1700000000)) == 1700000000
