"""Multipart uploads through boto3 (low-level API, so every step is seen)."""
import base64
import struct
import zlib

import pytest
from botocore.exceptions import ClientError

from cloudtest import (MiB, crc32_b64, error_code, http_status, md5_hex,
                       multipart_etag, payload)

PART = 5 * MiB


def upload_parts(s3, bucket, key, parts, **create_kwargs):
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **create_kwargs)
    uid = up["UploadId"]
    assert uid
    assert up["Bucket"] == bucket and up["Key"] == key
    done = []
    for n, body in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid,
                           PartNumber=n, Body=body)
        assert r["ETag"] == f'"{md5_hex(body)}"'
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    return uid, done


@pytest.mark.deadline(300)
def test_multipart_round_trip(s3, bucket):
    parts = [payload(PART, seed=1), payload(PART, seed=2),
             payload(1234, seed=3)]
    body = b"".join(parts)
    uid, done = upload_parts(s3, bucket, "mp/obj", parts,
                             ContentType="video/x-test",
                             Metadata={"origin": "multipart"})

    listed = s3.list_parts(Bucket=bucket, Key="mp/obj", UploadId=uid)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2, 3]
    assert [p["Size"] for p in listed["Parts"]] == [PART, PART, 1234]
    assert [p["ETag"] for p in listed["Parts"]] == [d["ETag"] for d in done]
    assert listed["IsTruncated"] is False

    uploads = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in uploads["Uploads"]] == \
        [("mp/obj", uid)]

    # the object does not exist before completion
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="mp/obj")
    assert http_status(ei.value) == 404

    resp = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp/obj", UploadId=uid,
        MultipartUpload={"Parts": done})
    expected_etag = multipart_etag(parts)
    assert resp["ETag"] == expected_etag
    assert resp["Key"] == "mp/obj"

    got = s3.get_object(Bucket=bucket, Key="mp/obj")
    assert got["Body"].read() == body
    assert got["ETag"] == expected_etag
    assert got["ContentLength"] == len(body)
    assert got["ContentType"] == "video/x-test"
    assert got["Metadata"] == {"origin": "multipart"}

    # ranged GET across the part boundary
    a, b = PART - 100, PART + 100
    rng = s3.get_object(Bucket=bucket, Key="mp/obj", Range=f"bytes={a}-{b}")
    assert rng["Body"].read() == body[a:b + 1]

    # the upload is gone once completed
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket) or \
        s3.list_multipart_uploads(Bucket=bucket)["Uploads"] == []
    with pytest.raises(ClientError) as ei:
        s3.list_parts(Bucket=bucket, Key="mp/obj", UploadId=uid)
    assert error_code(ei.value) == "NoSuchUpload"
    assert http_status(ei.value) == 404


@pytest.mark.moto_gap
@pytest.mark.deadline(300)
def test_get_and_head_by_part_number(s3, bucket):
    parts = [payload(PART, seed=41), payload(4321, seed=42)]
    uid, done = upload_parts(s3, bucket, "pn-get", parts)
    s3.complete_multipart_upload(Bucket=bucket, Key="pn-get", UploadId=uid,
                                 MultipartUpload={"Parts": done})
    p2 = s3.get_object(Bucket=bucket, Key="pn-get", PartNumber=2)
    assert p2["Body"].read() == parts[1]
    assert p2["PartsCount"] == 2
    assert p2["ContentRange"] == f"bytes {PART}-{PART + 4320}/{PART + 4321}"
    h1 = s3.head_object(Bucket=bucket, Key="pn-get", PartNumber=1)
    assert h1["ContentLength"] == PART
    assert h1["PartsCount"] == 2


def test_single_part_upload_is_allowed_under_5mib(s3, bucket):
    uid, done = upload_parts(s3, bucket, "tiny-mp", [b"tiny"])
    resp = s3.complete_multipart_upload(
        Bucket=bucket, Key="tiny-mp", UploadId=uid,
        MultipartUpload={"Parts": done})
    assert resp["ETag"] == multipart_etag([b"tiny"])
    assert s3.get_object(Bucket=bucket, Key="tiny-mp")["Body"].read() == \
        b"tiny"


def test_reupload_part_replaces_it(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="re")
    uid = up["UploadId"]
    s3.upload_part(Bucket=bucket, Key="re", UploadId=uid, PartNumber=1,
                   Body=b"old part")
    r = s3.upload_part(Bucket=bucket, Key="re", UploadId=uid, PartNumber=1,
                       Body=b"new part!")
    parts = s3.list_parts(Bucket=bucket, Key="re", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 9)]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="re", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="re")["Body"].read() == \
        b"new part!"


@pytest.mark.moto_gap
def test_abort_then_no_such_upload(s3, bucket):
    uid, done = upload_parts(s3, bucket, "ab", [b"abc"])
    assert http_status(s3.abort_multipart_upload(
        Bucket=bucket, Key="ab", UploadId=uid)) == 204
    for call in (
        lambda: s3.upload_part(Bucket=bucket, Key="ab", UploadId=uid,
                               PartNumber=2, Body=b"x"),
        lambda: s3.list_parts(Bucket=bucket, Key="ab", UploadId=uid),
        lambda: s3.complete_multipart_upload(
            Bucket=bucket, Key="ab", UploadId=uid,
            MultipartUpload={"Parts": done}),
    ):
        with pytest.raises(ClientError) as ei:
            call()
        assert error_code(ei.value) == "NoSuchUpload"
        assert http_status(ei.value) == 404
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="ab")
    assert http_status(ei.value) == 404


@pytest.mark.moto_gap
def test_unknown_upload_id(s3, bucket):
    with pytest.raises(ClientError) as ei:
        s3.upload_part(Bucket=bucket, Key="k", UploadId="not-an-upload-id",
                       PartNumber=1, Body=b"x")
    assert error_code(ei.value) == "NoSuchUpload"


@pytest.mark.deadline(300)
def test_complete_with_wrong_etag_is_invalid_part(s3, bucket):
    uid, done = upload_parts(s3, bucket, "wrong", [payload(PART), b"end"])
    done[1]["ETag"] = '"0123456789abcdef0123456789abcdef"'
    with pytest.raises(ClientError) as ei:
        s3.complete_multipart_upload(Bucket=bucket, Key="wrong",
                                     UploadId=uid,
                                     MultipartUpload={"Parts": done})
    assert error_code(ei.value) == "InvalidPart"
    assert http_status(ei.value) == 400
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="wrong")
    assert http_status(ei.value) == 404


@pytest.mark.deadline(300)
def test_complete_with_missing_part_number_is_invalid_part(s3, bucket):
    # part 1 is full size, so only the never-uploaded part 2 is wrong
    uid, done = upload_parts(s3, bucket, "missing-part",
                             [payload(PART, seed=61)])
    with pytest.raises(ClientError) as ei:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="missing-part", UploadId=uid,
            MultipartUpload={"Parts": done + [
                {"PartNumber": 2, "ETag": done[0]["ETag"]}]})
    assert error_code(ei.value) == "InvalidPart"


@pytest.mark.moto_gap
@pytest.mark.deadline(300)
def test_complete_parts_out_of_order(s3, bucket):
    # both parts are full size, so only the order is wrong
    uid, done = upload_parts(s3, bucket, "order",
                             [payload(PART, seed=51), payload(PART, seed=52)])
    with pytest.raises(ClientError) as ei:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="order", UploadId=uid,
            MultipartUpload={"Parts": list(reversed(done))})
    assert error_code(ei.value) == "InvalidPartOrder"
    assert http_status(ei.value) == 400


def test_complete_small_non_last_part_is_entity_too_small(s3, bucket):
    uid, done = upload_parts(s3, bucket, "small",
                             [payload(PART - 1), b"end"])
    with pytest.raises(ClientError) as ei:
        s3.complete_multipart_upload(Bucket=bucket, Key="small",
                                     UploadId=uid,
                                     MultipartUpload={"Parts": done})
    assert error_code(ei.value) == "EntityTooSmall"
    assert http_status(ei.value) == 400
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="small")
    assert http_status(ei.value) == 404


@pytest.mark.deadline(300)
def test_complete_with_subset_of_parts(s3, bucket):
    parts = [payload(PART, seed=11), payload(PART, seed=12), b"three"]
    uid, done = upload_parts(s3, bucket, "subset", parts)
    chosen = [done[0], done[2]]
    resp = s3.complete_multipart_upload(Bucket=bucket, Key="subset",
                                        UploadId=uid,
                                        MultipartUpload={"Parts": chosen})
    assert resp["ETag"] == multipart_etag([parts[0], parts[2]])
    assert s3.get_object(Bucket=bucket, Key="subset")["Body"].read() == \
        parts[0] + parts[2]


@pytest.mark.deadline(300)
def test_upload_part_copy_with_range(s3, bucket):
    src = payload(12 * MiB, seed=21)
    s3.put_object(Bucket=bucket, Key="copy-src", Body=src)
    up = s3.create_multipart_upload(Bucket=bucket, Key="copy-dst")
    uid = up["UploadId"]
    ranges = [(0, PART - 1), (PART, 2 * PART - 1), (2 * PART, len(src) - 1)]
    done = []
    for n, (a, b) in enumerate(ranges, start=1):
        r = s3.upload_part_copy(Bucket=bucket, Key="copy-dst", UploadId=uid,
                                PartNumber=n,
                                CopySource={"Bucket": bucket,
                                            "Key": "copy-src"},
                                CopySourceRange=f"bytes={a}-{b}")
        assert r["CopyPartResult"]["ETag"] == f'"{md5_hex(src[a:b + 1])}"'
        done.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
    resp = s3.complete_multipart_upload(Bucket=bucket, Key="copy-dst",
                                        UploadId=uid,
                                        MultipartUpload={"Parts": done})
    assert resp["ETag"] == multipart_etag([src[a:b + 1] for a, b in ranges])
    assert s3.get_object(Bucket=bucket, Key="copy-dst")["Body"].read() == src


def test_upload_part_copy_small_range_and_mixed(s3, bucket):
    src = payload(100_000, seed=22)
    s3.put_object(Bucket=bucket, Key="s", Body=src)
    up = s3.create_multipart_upload(Bucket=bucket, Key="d")
    uid = up["UploadId"]
    r = s3.upload_part_copy(Bucket=bucket, Key="d", UploadId=uid,
                            PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "s"},
                            CopySourceRange="bytes=10-19")
    done = [{"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}]
    s3.complete_multipart_upload(Bucket=bucket, Key="d", UploadId=uid,
                                 MultipartUpload={"Parts": done})
    assert s3.get_object(Bucket=bucket, Key="d")["Body"].read() == src[10:20]


@pytest.mark.deadline(300)
@pytest.mark.moto_gap
def test_part_checksums_crc32(s3, bucket):
    parts = [payload(PART, seed=31), payload(777, seed=32)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="crc",
                                    ChecksumAlgorithm="CRC32")
    uid = up["UploadId"]
    assert up.get("ChecksumAlgorithm") == "CRC32"
    done = []
    for n, body in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key="crc", UploadId=uid,
                           PartNumber=n, Body=body, ChecksumAlgorithm="CRC32")
        assert r["ChecksumCRC32"] == crc32_b64(body)
        done.append({"PartNumber": n, "ETag": r["ETag"],
                     "ChecksumCRC32": r["ChecksumCRC32"]})
    listed = s3.list_parts(Bucket=bucket, Key="crc", UploadId=uid)
    assert [p.get("ChecksumCRC32") for p in listed["Parts"]] == \
        [crc32_b64(p) for p in parts]
    resp = s3.complete_multipart_upload(Bucket=bucket, Key="crc",
                                        UploadId=uid,
                                        MultipartUpload={"Parts": done})
    head = s3.head_object(Bucket=bucket, Key="crc", ChecksumMode="ENABLED")
    composite = base64.b64encode(struct.pack(">I", zlib.crc32(b"".join(
        base64.b64decode(crc32_b64(p)) for p in parts)) & 0xFFFFFFFF)
    ).decode() + f"-{len(parts)}"
    full = crc32_b64(b"".join(parts))
    ctype = head.get("ChecksumType", "COMPOSITE")
    expected = composite if ctype == "COMPOSITE" else full
    assert head["ChecksumCRC32"] == expected
    assert resp.get("ChecksumCRC32", expected) == expected
    assert s3.get_object(Bucket=bucket, Key="crc")["Body"].read() == \
        b"".join(parts)


@pytest.mark.moto_gap
def test_part_with_wrong_checksum_rejected(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="badcrc",
                                    ChecksumAlgorithm="CRC32")
    with pytest.raises(ClientError) as ei:
        s3.upload_part(Bucket=bucket, Key="badcrc",
                       UploadId=up["UploadId"], PartNumber=1,
                       Body=b"actual bytes",
                       ChecksumCRC32=crc32_b64(b"other bytes"))
    assert error_code(ei.value) in ("BadDigest", "InvalidRequest")
    assert http_status(ei.value) == 400


@pytest.mark.moto_gap
def test_invalid_part_number(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="pn")
    for bad in (0, 10001):
        with pytest.raises(ClientError) as ei:
            s3.upload_part(Bucket=bucket, Key="pn", UploadId=up["UploadId"],
                           PartNumber=bad, Body=b"x")
        assert error_code(ei.value) == "InvalidArgument"
        assert http_status(ei.value) == 400


@pytest.mark.moto_gap
def test_list_multipart_uploads_prefix(s3, bucket):
    ids = {}
    for key in ("logs/a", "logs/b", "other/c"):
        ids[key] = s3.create_multipart_upload(Bucket=bucket,
                                              Key=key)["UploadId"]
    resp = s3.list_multipart_uploads(Bucket=bucket, Prefix="logs/")
    assert [(u["Key"], u["UploadId"]) for u in resp["Uploads"]] == \
        [("logs/a", ids["logs/a"]), ("logs/b", ids["logs/b"])]
    resp = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == \
        ["logs/", "other/"]
