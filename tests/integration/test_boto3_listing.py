"""ListObjects v1 and v2 through boto3."""
import re
import uuid
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from cloudtest import error_code, http_status

N_PAGED = 2500


@pytest.fixture(scope="module")
def paged_bucket(s3):
    """A bucket holding 2,500 small objects page/00000 .. page/02499."""
    name = f"paged-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    keys = [f"page/{i:05d}" for i in range(N_PAGED)]

    def put(k):
        s3.put_object(Bucket=name, Key=k, Body=k.encode())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))
    return name, keys


def fill(s3, bucket, keys):
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())


@pytest.mark.deadline(300)
def test_v2_paging_default_page_size(s3, paged_bucket):
    bucket, keys = paged_bucket
    seen, pages, token = [], [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        resp = s3.list_objects_v2(Bucket=bucket, **kw)
        pages.append(resp["KeyCount"])
        assert resp["KeyCount"] == len(resp.get("Contents", []))
        assert resp["MaxKeys"] == 1000
        seen += [o["Key"] for o in resp["Contents"]]
        if not resp["IsTruncated"]:
            assert "NextContinuationToken" not in resp
            break
        token = resp["NextContinuationToken"]
        assert token
    assert pages == [1000, 1000, 500]
    assert seen == keys


@pytest.mark.deadline(300)
def test_v2_paging_small_pages_with_paginator(s3, paged_bucket):
    bucket, keys = paged_bucket
    seen = []
    counts = []
    for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 700}):
        counts.append(page["KeyCount"])
        seen += [o["Key"] for o in page["Contents"]]
    assert counts == [700, 700, 700, 400]
    assert seen == keys


@pytest.mark.moto_gap
def test_v2_continuation_token_echoed(s3, paged_bucket):
    bucket, keys = paged_bucket
    first = s3.list_objects_v2(Bucket=bucket, MaxKeys=10)
    token = first["NextContinuationToken"]
    second = s3.list_objects_v2(Bucket=bucket, MaxKeys=10,
                                ContinuationToken=token)
    assert second["ContinuationToken"] == token
    assert [o["Key"] for o in second["Contents"]] == keys[10:20]


def test_v2_objects_carry_size_etag_date(s3, paged_bucket):
    bucket, _ = paged_bucket
    resp = s3.list_objects_v2(Bucket=bucket, Prefix="page/0000", MaxKeys=3)
    for obj in resp["Contents"]:
        head = s3.head_object(Bucket=bucket, Key=obj["Key"])
        assert obj["Size"] == len(obj["Key"]) == head["ContentLength"]
        assert obj["ETag"] == head["ETag"]
        # listings carry ISO-8601 (maybe with millis), HEAD an HTTP date
        assert obj["LastModified"].replace(microsecond=0) == \
            head["LastModified"]
        assert obj["StorageClass"] == "STANDARD"


def test_v2_start_after(s3, paged_bucket):
    bucket, keys = paged_bucket
    resp = s3.list_objects_v2(Bucket=bucket, StartAfter="page/02495")
    assert [o["Key"] for o in resp["Contents"]] == keys[2496:]
    assert resp["StartAfter"] == "page/02495"
    assert resp["IsTruncated"] is False
    # StartAfter need not be an existing key
    resp = s3.list_objects_v2(Bucket=bucket, StartAfter="page/02497x")
    assert [o["Key"] for o in resp["Contents"]] == keys[2498:]


def test_v2_prefix_delimiter(s3, bucket):
    keys = ["a.txt", "dir/b.txt", "dir/sub/c.txt", "dir/sub/d.txt",
            "dir/sub2/e.txt", "dir2/f.txt", "z"]
    fill(s3, bucket, keys)

    resp = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in resp["Contents"]] == ["a.txt", "z"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["dir/", "dir2/"]
    assert resp["KeyCount"] == 4      # keys + common prefixes
    assert resp["Delimiter"] == "/"

    resp = s3.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert [o["Key"] for o in resp["Contents"]] == ["dir/b.txt"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == \
        ["dir/sub/", "dir/sub2/"]
    assert resp["Prefix"] == "dir/"

    resp = s3.list_objects_v2(Bucket=bucket, Prefix="dir/sub/")
    assert [o["Key"] for o in resp["Contents"]] == \
        ["dir/sub/c.txt", "dir/sub/d.txt"]
    assert "CommonPrefixes" not in resp

    resp = s3.list_objects_v2(Bucket=bucket, Prefix="nothing-here")
    assert resp["KeyCount"] == 0
    assert "Contents" not in resp
    assert resp["IsTruncated"] is False

    # a delimiter other than '/'
    resp = s3.list_objects_v2(Bucket=bucket, Delimiter=".")
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == \
        ["a.", "dir/b.", "dir/sub/c.", "dir/sub/d.", "dir/sub2/e.",
         "dir2/f."]
    assert [o["Key"] for o in resp["Contents"]] == ["z"]


def test_v2_delimiter_paging_counts_prefixes(s3, bucket):
    keys = ["a/1", "a/2", "b", "c/1", "c/2", "d"]
    fill(s3, bucket, keys)
    entries, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        resp = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=2,
                                  **kw)
        assert resp["KeyCount"] <= 2
        entries += [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
        entries += [o["Key"] for o in resp.get("Contents", [])]
        if not resp["IsTruncated"]:
            break
        token = resp["NextContinuationToken"]
    assert sorted(entries) == ["a/", "b", "c/", "d"]


@pytest.mark.moto_gap
def test_v2_fetch_owner(s3, bucket):
    s3.put_object(Bucket=bucket, Key="owned", Body=b"o")
    plain = s3.list_objects_v2(Bucket=bucket)
    assert "Owner" not in plain["Contents"][0]
    owned = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)
    owner = owned["Contents"][0]["Owner"]
    assert owner["ID"]
    assert owner["ID"] == s3.list_buckets()["Owner"]["ID"]


ENC_KEYS = ["plain", "with space", "plus+sign", "percent%25sign",
            "unicode-é漢字", "amp&eq=", "tab\there", "star*"]


def test_v2_encoding_type_url(s3, bucket):
    fill(s3, bucket, ENC_KEYS)
    # explicit EncodingType: botocore hands us the raw, encoded values
    resp = s3.list_objects_v2(Bucket=bucket, EncodingType="url")
    assert resp["EncodingType"] == "url"
    raw = [o["Key"] for o in resp["Contents"]]
    for r in raw:
        assert re.fullmatch(r"[A-Za-z0-9%+._~*\-]+", r), \
            f"key not URL-encoded: {r!r}"
    decoded = [urllib.parse.unquote_plus(r) for r in raw]
    assert decoded == sorted(ENC_KEYS, key=lambda k: k.encode())

    # prefix + delimiter are echoed encoded too
    resp = s3.list_objects_v2(Bucket=bucket, EncodingType="url",
                              Prefix="with", Delimiter=" ")
    assert urllib.parse.unquote_plus(resp["Prefix"]) == "with"
    assert [urllib.parse.unquote_plus(o["Key"])
            for o in resp.get("Contents", [])] == []
    assert [urllib.parse.unquote_plus(p["Prefix"])
            for p in resp["CommonPrefixes"]] == ["with "]

    # default boto3 behaviour (auto url-encoding, decoded for us)
    auto = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert auto == sorted(ENC_KEYS, key=lambda k: k.encode())


@pytest.mark.moto_gap
def test_v2_encoding_type_url_encodes_delimiter(s3, bucket):
    fill(s3, bucket, ["with space"])
    resp = s3.list_objects_v2(Bucket=bucket, EncodingType="url",
                              Delimiter=" ")
    # AWS encodes Delimiter, Prefix, Key and StartAfter in the response
    assert urllib.parse.unquote_plus(resp["Delimiter"]) == " "
    assert " " not in resp["Delimiter"]
    assert [urllib.parse.unquote_plus(p["Prefix"])
            for p in resp["CommonPrefixes"]] == ["with "]


def test_key_order_is_utf8_binary(s3, bucket):
    keys = ["a", "B", "b", "Z", "_", "~", "é", "ÿ", "\u0100", "\ufffd",
            "😀", "😀a", "a/b", "a-b", "a b", "0", "9"]
    fill(s3, bucket, keys)
    expected = sorted(keys, key=lambda k: k.encode("utf-8"))
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == expected
    # the order holds across page boundaries
    paged = []
    for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 3}):
        paged += [o["Key"] for o in page["Contents"]]
    assert paged == expected
    v1 = [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]]
    assert v1 == expected


def test_v1_marker_and_max_keys(s3, bucket):
    keys = [f"k{i:02d}" for i in range(7)]
    fill(s3, bucket, keys)
    resp = s3.list_objects(Bucket=bucket, MaxKeys=3)
    assert [o["Key"] for o in resp["Contents"]] == keys[:3]
    assert resp["IsTruncated"] is True
    assert resp["MaxKeys"] == 3
    resp = s3.list_objects(Bucket=bucket, MaxKeys=3, Marker="k02")
    assert [o["Key"] for o in resp["Contents"]] == keys[3:6]
    assert resp["IsTruncated"] is True
    resp = s3.list_objects(Bucket=bucket, MaxKeys=3, Marker="k05")
    assert [o["Key"] for o in resp["Contents"]] == ["k06"]
    assert resp["IsTruncated"] is False
    # v1 entries include the owner
    assert resp["Contents"][0]["Owner"]["ID"]


@pytest.mark.moto_gap
def test_v1_marker_echo_and_no_next_marker_without_delimiter(s3, bucket):
    fill(s3, bucket, ["x1", "x2", "x3"])
    resp = s3.list_objects(Bucket=bucket, MaxKeys=2, Marker="x0")
    assert resp["Marker"] == "x0"
    assert resp["IsTruncated"] is True
    # AWS: NextMarker is returned only when a delimiter is specified
    assert "NextMarker" not in resp


@pytest.mark.moto_gap
def test_v1_next_marker_with_delimiter(s3, bucket):
    keys = ["a/1", "a/2", "b", "c/1", "c/2", "d"]
    fill(s3, bucket, keys)
    pages, marker = [], None
    for _ in range(10):
        kw = {"Marker": marker} if marker else {}
        resp = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=1, **kw)
        entry = [p["Prefix"] for p in resp.get("CommonPrefixes", [])] + \
                [o["Key"] for o in resp.get("Contents", [])]
        pages.append(entry)
        if not resp["IsTruncated"]:
            assert "NextMarker" not in resp or resp["NextMarker"] == entry[-1]
            break
        assert resp["NextMarker"] == entry[-1]
        marker = resp["NextMarker"]
    assert pages == [["a/"], ["b"], ["c/"], ["d"]]


def test_list_missing_bucket(s3):
    with pytest.raises(ClientError) as ei:
        s3.list_objects_v2(Bucket=f"missing-{uuid.uuid4().hex[:12]}")
    assert error_code(ei.value) == "NoSuchBucket"
    assert http_status(ei.value) == 404


@pytest.mark.moto_gap
def test_list_invalid_max_keys(s3, bucket):
    with pytest.raises(ClientError) as ei:
        s3.list_objects_v2(Bucket=bucket, MaxKeys=-1)
    assert error_code(ei.value) == "InvalidArgument"
    assert http_status(ei.value) == 400
