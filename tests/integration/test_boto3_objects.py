"""Object operations through boto3: every byte that comes back is checked."""
import base64
import datetime as dt
import email.utils
import hashlib

import pytest
from botocore.exceptions import ClientError

from cloudtest import (MiB, error_code, http_status, md5_hex, payload,
                       resp_headers)


def put_get(s3, bucket, key, body, **kwargs):
    put = s3.put_object(Bucket=bucket, Key=key, Body=body, **kwargs)
    got = s3.get_object(Bucket=bucket, Key=key)
    data = got["Body"].read()
    return put, got, data


@pytest.mark.parametrize("size", [0, 1, 1024, 5 * MiB + 1])
def test_put_get_head_sizes(s3, bucket, size):
    body = payload(size, seed=size)
    key = f"obj-{size}"
    put, got, data = put_get(s3, bucket, key, body)
    assert put["ETag"] == f'"{md5_hex(body)}"'
    assert data == body
    assert got["ContentLength"] == size
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == size
    assert head["ETag"] == put["ETag"]
    assert isinstance(head["LastModified"], dt.datetime)
    assert abs((dt.datetime.now(dt.timezone.utc) - head["LastModified"])
               .total_seconds()) < 300
    assert resp_headers(head)["content-length"] == str(size)


def test_empty_object_default_content_type(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    # AWS defaults to binary/octet-stream when no Content-Type was given
    assert got["ContentType"] in ("binary/octet-stream",
                                  "application/octet-stream")


def test_metadata_and_standard_headers_round_trip(s3, bucket):
    expires = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    meta = {"color": "blue", "multi-word-name": "Value With Spaces",
            "num": "42"}
    body = b'{"hello": "world"}'
    s3.put_object(Bucket=bucket, Key="doc.json", Body=body, Metadata=meta,
                  ContentType="application/json; charset=utf-8",
                  ContentEncoding="identity",
                  ContentDisposition='attachment; filename="doc.json"',
                  ContentLanguage="en-GB", CacheControl="max-age=3600",
                  Expires=expires)
    for resp in (s3.head_object(Bucket=bucket, Key="doc.json"),
                 s3.get_object(Bucket=bucket, Key="doc.json")):
        assert resp["Metadata"] == meta
        assert resp["ContentType"] == "application/json; charset=utf-8"
        assert resp["ContentEncoding"] == "identity"
        assert resp["ContentDisposition"] == 'attachment; filename="doc.json"'
        assert resp["ContentLanguage"] == "en-GB"
        assert resp["CacheControl"] == "max-age=3600"
        raw_expires = resp_headers(resp)["expires"]
        assert email.utils.parsedate_to_datetime(raw_expires) == expires
        # user metadata travels as x-amz-meta-* headers
        assert resp_headers(resp)["x-amz-meta-color"] == "blue"
        if "Body" in resp:
            assert resp["Body"].read() == body


@pytest.mark.moto_gap
def test_user_metadata_too_large(s3, bucket):
    # AWS: user-defined metadata is limited to 2 KB (keys + values, UTF-8)
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=bucket, Key="big-meta", Body=b"x",
                      Metadata={"big": "v" * 2100})
    assert error_code(ei.value) == "MetadataTooLarge"
    assert http_status(ei.value) == 400
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="big-meta")
    assert http_status(ei.value) == 404


def test_user_metadata_just_under_limit(s3, bucket):
    meta = {"a": "v" * 1900}
    s3.put_object(Bucket=bucket, Key="ok-meta", Body=b"x", Metadata=meta)
    assert s3.head_object(Bucket=bucket, Key="ok-meta")["Metadata"] == meta


def test_overwrite_replaces_content_and_metadata(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first",
                  Metadata={"v": "1"}, ContentType="text/plain")
    s3.put_object(Bucket=bucket, Key="k", Body=b"second!")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"second!"
    assert got["Metadata"] == {}
    assert got["ContentType"] != "text/plain"


def test_delete_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="gone", Body=b"bye")
    resp = s3.delete_object(Bucket=bucket, Key="gone")
    assert http_status(resp) == 204
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key="gone")
    assert error_code(ei.value) == "NoSuchKey"
    assert http_status(ei.value) == 404
    # deleting a missing key is not an error in S3
    assert http_status(s3.delete_object(Bucket=bucket, Key="gone")) == 204
    assert http_status(s3.delete_object(Bucket=bucket, Key="never")) == 204


# ---------------------------------------------------------------- ranges

@pytest.fixture
def hundred(s3, bucket):
    body = bytes(range(100))
    s3.put_object(Bucket=bucket, Key="hundred", Body=body)
    return bucket, body


@pytest.mark.parametrize("rng,start,end", [
    ("bytes=0-9", 0, 9),
    ("bytes=-5", 95, 99),
    ("bytes=10-", 10, 99),
    ("bytes=50-50", 50, 50),
    ("bytes=90-1000", 90, 99),   # end past the size is clamped
])
def test_range_get(s3, hundred, rng, start, end):
    bucket, body = hundred
    got = s3.get_object(Bucket=bucket, Key="hundred", Range=rng)
    assert http_status(got) == 206
    assert got["Body"].read() == body[start:end + 1]
    assert got["ContentRange"] == f"bytes {start}-{end}/100"
    assert got["ContentLength"] == end - start + 1
    assert got["ETag"] == f'"{md5_hex(body)}"'


def test_range_unsatisfiable(s3, hundred):
    bucket, _ = hundred
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key="hundred", Range="bytes=100-200")
    assert error_code(ei.value) == "InvalidRange"
    assert http_status(ei.value) == 416


def test_range_large_object_middle(s3, bucket):
    body = payload(6 * MiB + 123, seed=7)
    s3.put_object(Bucket=bucket, Key="big", Body=body)
    a, b = 5 * MiB - 10, 5 * MiB + 20
    got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={a}-{b}")
    assert got["Body"].read() == body[a:b + 1]


# ---------------------------------------------------------- conditionals

def test_conditional_get(s3, bucket):
    body = b"conditional body"
    etag = s3.put_object(Bucket=bucket, Key="c", Body=body)["ETag"]
    lm = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    past = lm - dt.timedelta(days=1)
    future = lm + dt.timedelta(days=1)

    got = s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)
    assert got["Body"].read() == body
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0123456789abcdef"')
    assert error_code(ei.value) == "PreconditionFailed"
    assert http_status(ei.value) == 412

    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert http_status(ei.value) == 304
    got = s3.get_object(Bucket=bucket, Key="c", IfNoneMatch='"other"')
    assert got["Body"].read() == body

    got = s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=past)
    assert got["Body"].read() == body
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=future)
    assert http_status(ei.value) == 304

    got = s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=future)
    assert got["Body"].read() == body
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert error_code(ei.value) == "PreconditionFailed"
    assert http_status(ei.value) == 412


def test_conditional_head(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="h", Body=b"x")["ETag"]
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="h", IfNoneMatch=etag)
    assert http_status(ei.value) == 304
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="h", IfMatch='"nope"')
    assert http_status(ei.value) == 412


@pytest.mark.moto_gap
def test_response_header_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"override me",
                  ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket, Key="o",
        ResponseContentType="application/x-test",
        ResponseContentDisposition='attachment; filename="x.bin"',
        ResponseContentLanguage="fr",
        ResponseCacheControl="no-cache",
        ResponseContentEncoding="identity",
        ResponseExpires=dt.datetime(2030, 5, 6, 7, 8, 9,
                                    tzinfo=dt.timezone.utc))
    assert got["Body"].read() == b"override me"
    assert got["ContentType"] == "application/x-test"
    assert got["ContentDisposition"] == 'attachment; filename="x.bin"'
    assert got["ContentLanguage"] == "fr"
    assert got["CacheControl"] == "no-cache"
    assert got["ContentEncoding"] == "identity"
    assert email.utils.parsedate_to_datetime(
        resp_headers(got)["expires"]) == dt.datetime(
            2030, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    # the stored object is unchanged
    assert s3.head_object(Bucket=bucket, Key="o")["ContentType"] == \
        "text/plain"


# ------------------------------------------------------------ integrity

def test_content_md5_correct(s3, bucket):
    body = b"checked body"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    s3.put_object(Bucket=bucket, Key="md5ok", Body=body, ContentMD5=md5)
    assert s3.get_object(Bucket=bucket, Key="md5ok")["Body"].read() == body


@pytest.mark.moto_gap
def test_content_md5_wrong_is_bad_digest(s3, bucket):
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=bucket, Key="md5bad", Body=b"real body",
                      ContentMD5=wrong)
    assert error_code(ei.value) == "BadDigest"
    assert http_status(ei.value) == 400
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="md5bad")
    assert http_status(ei.value) == 404


@pytest.mark.moto_gap
def test_content_md5_malformed_is_invalid_digest(s3, bucket):
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=bucket, Key="md5junk", Body=b"x",
                      ContentMD5="not-base64-md5")
    assert error_code(ei.value) == "InvalidDigest"
    assert http_status(ei.value) == 400


@pytest.mark.parametrize("algo", ["CRC32", "CRC32C", "SHA1", "SHA256",
                                  "CRC64NVME"])
def test_put_with_checksum_algorithm(s3, bucket, algo):
    body = payload(70000, seed=algo)
    put = s3.put_object(Bucket=bucket, Key=f"ck-{algo}", Body=body,
                        ChecksumAlgorithm=algo)
    field = f"Checksum{algo}"
    assert put[field]
    head = s3.head_object(Bucket=bucket, Key=f"ck-{algo}",
                          ChecksumMode="ENABLED")
    assert head[field] == put[field]
    got = s3.get_object(Bucket=bucket, Key=f"ck-{algo}",
                        ChecksumMode="ENABLED")
    assert got["Body"].read() == body   # botocore validates the checksum too
    assert got[field] == put[field]


# ----------------------------------------------------------------- copy

def test_copy_same_bucket_keeps_metadata(s3, bucket):
    body = payload(3000, seed=3)
    s3.put_object(Bucket=bucket, Key="src", Body=body, Metadata={"m": "1"},
                  ContentType="text/x-src")
    resp = s3.copy_object(Bucket=bucket, Key="dst",
                          CopySource={"Bucket": bucket, "Key": "src"})
    assert resp["CopyObjectResult"]["ETag"] == f'"{md5_hex(body)}"'
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == body
    assert got["Metadata"] == {"m": "1"}
    assert got["ContentType"] == "text/x-src"
    # source untouched
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == body


def test_copy_across_buckets_with_replace(s3, bucket, bucket_name):
    other = bucket_name("copy-dst")
    s3.create_bucket(Bucket=other)
    body = payload(5000, seed=4)
    s3.put_object(Bucket=bucket, Key="a/src key+1", Body=body,
                  Metadata={"old": "yes"}, ContentType="text/old")
    s3.copy_object(Bucket=other, Key="copied",
                   CopySource={"Bucket": bucket, "Key": "a/src key+1"},
                   MetadataDirective="REPLACE", Metadata={"new": "yes"},
                   ContentType="text/new")
    got = s3.get_object(Bucket=other, Key="copied")
    assert got["Body"].read() == body
    assert got["Metadata"] == {"new": "yes"}
    assert got["ContentType"] == "text/new"


def test_copy_directive_copy_ignores_new_metadata(s3, bucket):
    s3.put_object(Bucket=bucket, Key="s", Body=b"s", Metadata={"keep": "1"})
    s3.copy_object(Bucket=bucket, Key="d",
                   CopySource={"Bucket": bucket, "Key": "s"},
                   MetadataDirective="COPY", Metadata={"ignored": "1"})
    assert s3.head_object(Bucket=bucket, Key="d")["Metadata"] == {"keep": "1"}


def test_copy_onto_itself_with_replace(s3, bucket):
    s3.put_object(Bucket=bucket, Key="self", Body=b"me", Metadata={"v": "1"})
    s3.copy_object(Bucket=bucket, Key="self",
                   CopySource={"Bucket": bucket, "Key": "self"},
                   MetadataDirective="REPLACE", Metadata={"v": "2"})
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Body"].read() == b"me"
    assert got["Metadata"] == {"v": "2"}


def test_copy_onto_itself_without_change_is_invalid(s3, bucket):
    s3.put_object(Bucket=bucket, Key="self2", Body=b"me")
    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=bucket, Key="self2",
                       CopySource={"Bucket": bucket, "Key": "self2"})
    assert error_code(ei.value) == "InvalidRequest"
    assert http_status(ei.value) == 400


@pytest.mark.moto_gap
def test_copy_source_if_match(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="cs", Body=b"cs")["ETag"]
    s3.copy_object(Bucket=bucket, Key="cs-ok",
                   CopySource={"Bucket": bucket, "Key": "cs"},
                   CopySourceIfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="cs-ok")["Body"].read() == b"cs"
    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=bucket, Key="cs-bad",
                       CopySource={"Bucket": bucket, "Key": "cs"},
                       CopySourceIfMatch='"00000000000000000000000000000000"')
    assert error_code(ei.value) == "PreconditionFailed"
    assert http_status(ei.value) == 412
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="cs-bad")
    assert http_status(ei.value) == 404


def test_copy_missing_source(s3, bucket):
    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=bucket, Key="x",
                       CopySource={"Bucket": bucket, "Key": "no-such"})
    assert error_code(ei.value) == "NoSuchKey"
    assert http_status(ei.value) == 404


# -------------------------------------------------------- DeleteObjects

def test_delete_objects_verbose(s3, bucket):
    for k in ("d1", "d2", "dir/d3"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    resp = s3.delete_objects(Bucket=bucket, Delete={
        "Objects": [{"Key": "d1"}, {"Key": "dir/d3"}, {"Key": "missing"}],
        "Quiet": False})
    assert sorted(d["Key"] for d in resp["Deleted"]) == \
        ["d1", "dir/d3", "missing"]
    assert resp.get("Errors", []) == []
    keys = [o["Key"] for o in
            s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["d2"]


@pytest.mark.moto_gap
def test_delete_objects_quiet(s3, bucket):
    for k in ("q1", "q2"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"q")
    resp = s3.delete_objects(Bucket=bucket, Delete={
        "Objects": [{"Key": "q1"}, {"Key": "q2"}, {"Key": "nope"}],
        "Quiet": True})
    assert resp.get("Deleted", []) == []
    assert resp.get("Errors", []) == []
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


# ------------------------------------------------------------------ keys

WEIRD_KEYS = [
    "unicode/é漢字🙂",
    "spaces in key name",
    "plus+sign",
    "equals=sign&ampersand",
    "percent%20literal%",
    "/leading-slash",
    "double//slash",
    "question?mark#hash",
    "tilde~star*paren()",
    "trailing/",
]


@pytest.mark.parametrize("key", WEIRD_KEYS)
def test_weird_keys_round_trip(s3, bucket, key):
    body = key.encode() * 3
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
    listed = [o["Key"] for o in
              s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert listed == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


@pytest.mark.moto_gap
def test_key_length_limit(s3, bucket):
    ok_ascii = "k" * 1024
    ok_multibyte = "é" * 512          # 1024 bytes in UTF-8
    for key in (ok_ascii, ok_multibyte):
        s3.put_object(Bucket=bucket, Key=key, Body=b"long")
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"long"
    for key in ("k" * 1025, "é" * 512 + "x"):
        with pytest.raises(ClientError) as ei:
            s3.put_object(Bucket=bucket, Key=key, Body=b"too long")
        assert error_code(ei.value) == "KeyTooLongError"
        assert http_status(ei.value) == 400
    listed = sorted(o["Key"] for o in
                    s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert listed == sorted([ok_ascii, ok_multibyte])


# ----------------------------------------- aws-chunked trailer checksums
# botocore sends these only over HTTPS; force_trailer_checksums makes it do
# the same over our plain-HTTP endpoint, so the server sees the exact bytes
# a real SDK produces (Transfer-Encoding: chunked + aws-chunked + trailer).

@pytest.fixture(scope="module")
def s3_trailer(server):
    from cloudtest import force_trailer_checksums, make_client
    return force_trailer_checksums(make_client(server))


@pytest.mark.parametrize("size", [0, 1, 70_000, 5 * MiB + 1])
@pytest.mark.parametrize("algo", ["CRC32", "CRC32C", "SHA256"])
def test_put_with_trailer_checksum(s3_trailer, s3, bucket, algo, size):
    import io
    body = payload(size, seed=f"trailer-{algo}")
    key = f"trailer-{algo}-{size}"
    put = s3_trailer.put_object(Bucket=bucket, Key=key, Body=io.BytesIO(body),
                                ChecksumAlgorithm=algo)
    assert put["ETag"] == f'"{md5_hex(body)}"'
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got["ContentLength"] == size
    assert got[f"Checksum{algo}"] == put[f"Checksum{algo}"]
    # the aws-chunked framing must not leak into stored metadata
    assert got.get("ContentEncoding") in (None, "")


@pytest.mark.deadline(300)
def test_multipart_parts_with_trailer_checksum(s3_trailer, s3, bucket):
    import io
    from cloudtest import crc32_b64, multipart_etag
    parts = [payload(5 * MiB, seed="tp1"), payload(10, seed="tp2")]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="tmp",
                                     ChecksumAlgorithm="CRC32")["UploadId"]
    done = []
    for n, p in enumerate(parts, 1):
        r = s3_trailer.upload_part(Bucket=bucket, Key="tmp", UploadId=uid,
                                   PartNumber=n, Body=io.BytesIO(p),
                                   ChecksumAlgorithm="CRC32")
        assert r["ETag"] == f'"{md5_hex(p)}"'
        assert r["ChecksumCRC32"] == crc32_b64(p)
        done.append({"PartNumber": n, "ETag": r["ETag"],
                     "ChecksumCRC32": r["ChecksumCRC32"]})
    resp = s3.complete_multipart_upload(Bucket=bucket, Key="tmp",
                                        UploadId=uid,
                                        MultipartUpload={"Parts": done})
    assert resp["ETag"] == multipart_etag(parts)
    assert s3.get_object(Bucket=bucket, Key="tmp")["Body"].read() == \
        b"".join(parts)
