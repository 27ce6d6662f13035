"""Bucket operations through boto3."""
import secrets
import string
import uuid

import pytest
from botocore.exceptions import ClientError

from cloudtest import error_code, http_status


def test_create_list_head_delete_bucket(s3, bucket_name):
    name = bucket_name()
    resp = s3.create_bucket(Bucket=name)
    assert http_status(resp) == 200
    # AWS answers CreateBucket with a Location header naming the bucket
    assert resp["Location"].rstrip("/").endswith(name)

    listed = s3.list_buckets()
    entry = [b for b in listed["Buckets"] if b["Name"] == name]
    assert len(entry) == 1
    assert entry[0]["CreationDate"] is not None
    assert listed["Owner"]["ID"]

    assert http_status(s3.head_bucket(Bucket=name)) == 200

    assert http_status(s3.delete_bucket(Bucket=name)) == 204
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as ei:
        s3.head_bucket(Bucket=name)
    assert http_status(ei.value) == 404


@pytest.mark.moto_gap
def test_list_buckets_sorted_by_name(s3, bucket_name):
    for prefix in ("zz", "aa", "mm"):
        s3.create_bucket(Bucket=bucket_name(prefix))
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert names == sorted(names), "ListBuckets is sorted by name"


def test_head_missing_bucket_is_404(s3, bucket_name):
    with pytest.raises(ClientError) as ei:
        s3.head_bucket(Bucket=bucket_name("missing"))
    assert http_status(ei.value) == 404
    # HEAD has no body, so botocore reports the status as the code
    assert error_code(ei.value) in ("404", "NoSuchBucket")


def test_delete_missing_bucket_is_no_such_bucket(s3, bucket_name):
    name = bucket_name("missing")
    with pytest.raises(ClientError) as ei:
        s3.delete_bucket(Bucket=name)
    assert error_code(ei.value) == "NoSuchBucket"
    assert http_status(ei.value) == 404
    assert ei.value.response["Error"].get("BucketName") in (None, name)


@pytest.mark.moto_gap
def test_create_existing_own_bucket(s3, bucket):
    with pytest.raises(ClientError) as ei:
        s3.create_bucket(Bucket=bucket)
    assert error_code(ei.value) == "BucketAlreadyOwnedByYou"
    assert http_status(ei.value) == 409


@pytest.mark.parametrize("name", [
    "ab",                       # too short
    "a" * 64,                   # too long
    "UpperCase-bucket",         # upper case
    "under_score-bucket",       # underscore
    "-leading-dash",            # must start with letter/digit
    "trailing-dash-",           # must end with letter/digit
    "double..dots",             # adjacent periods
    "dot.-dash",                # period next to dash
    "192.168.5.4",              # IP address form
])
@pytest.mark.moto_gap
def test_invalid_bucket_names(s3, name):
    with pytest.raises(ClientError) as ei:
        s3.create_bucket(Bucket=name)
    assert error_code(ei.value) == "InvalidBucketName", name
    assert http_status(ei.value) == 400
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize("make", [
    lambda u: "".join(secrets.choice(string.ascii_lowercase + string.digits)
                      for _ in range(3)),          # 3 chars: shortest legal
    lambda u: ("a" * 43) + u,                        # 63 chars: longest legal
    lambda u: f"with.dots.{u}",
    lambda u: f"0-digit-start-{u}",
], ids=["len3", "len63", "dots", "digit-start"])
def test_edge_valid_bucket_names(s3, make):
    name = make(uuid.uuid4().hex[:20])
    s3.create_bucket(Bucket=name)
    assert http_status(s3.head_bucket(Bucket=name)) == 200
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert http_status(s3.delete_bucket(Bucket=name)) == 204


def test_delete_non_empty_bucket(s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep-me", Body=b"x")
    with pytest.raises(ClientError) as ei:
        s3.delete_bucket(Bucket=bucket)
    assert error_code(ei.value) == "BucketNotEmpty"
    assert http_status(ei.value) == 409
    # still there, object intact
    assert s3.get_object(Bucket=bucket, Key="keep-me")["Body"].read() == b"x"
    s3.delete_object(Bucket=bucket, Key="keep-me")
    assert http_status(s3.delete_bucket(Bucket=bucket)) == 204


def test_delete_bucket_with_only_incomplete_upload(s3, bucket):
    # an aborted upload leaves nothing behind that blocks deletion
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"])
    assert http_status(s3.delete_bucket(Bucket=bucket)) == 204


def test_get_bucket_location_us_east_1(s3, bucket):
    resp = s3.get_bucket_location(Bucket=bucket)
    # AWS: buckets in us-east-1 have a null LocationConstraint
    assert resp.get("LocationConstraint") in (None, "")


def test_get_bucket_location_missing_bucket(s3, bucket_name):
    with pytest.raises(ClientError) as ei:
        s3.get_bucket_location(Bucket=bucket_name("missing"))
    assert error_code(ei.value) == "NoSuchBucket"
