"""ListObjectVersions on buckets that were never versioned (each object is its one `null` version),
the way tools that empty a bucket use it: boto3's resource API, Terraform's force_destroy loop
(list versions, delete them by VersionId), aws-cli."""
import json
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cloudtest import REGION, error_code, http_status

KEYS = ["a.txt", "b/1", "b/2", "b/deep/3", "c"]


def fill(s3, bucket):
    etags = {}
    for key in KEYS:
        etags[key] = s3.put_object(Bucket=bucket, Key=key, Body=key.encode() * 3)["ETag"]
    return etags


def test_each_object_is_listed_once_as_its_null_version(s3, bucket):
    etags = fill(s3, bucket)
    r = s3.list_object_versions(Bucket=bucket)
    assert [v["Key"] for v in r["Versions"]] == KEYS
    assert all(v["VersionId"] == "null" and v["IsLatest"] for v in r["Versions"]), r["Versions"]
    assert {v["Key"]: v["ETag"] for v in r["Versions"]} == etags
    assert {v["Key"]: v["Size"] for v in r["Versions"]} == {k: 3 * len(k) for k in KEYS}
    assert "DeleteMarkers" not in r and r["IsTruncated"] is False and r["MaxKeys"] == 1000
    assert r["Versions"][0]["Owner"]["ID"] and r["Versions"][0]["StorageClass"] == "STANDARD"

    r = s3.list_object_versions(Bucket=bucket, Prefix="b/", Delimiter="/")
    assert [v["Key"] for v in r["Versions"]] == ["b/1", "b/2"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["b/deep/"]


def test_pages_resume_after_the_key_marker(s3, bucket):
    fill(s3, bucket)
    r = s3.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert [v["Key"] for v in r["Versions"]] == KEYS[:2] and r["IsTruncated"] is True
    assert (r["NextKeyMarker"], r["NextVersionIdMarker"]) == ("b/1", "null")
    r = s3.list_object_versions(Bucket=bucket, MaxKeys=2, KeyMarker=r["NextKeyMarker"], VersionIdMarker=r["NextVersionIdMarker"])
    assert [v["Key"] for v in r["Versions"]] == KEYS[2:4] and r["KeyMarker"] == "b/1" and r["VersionIdMarker"] == "null"
    pages = list(s3.get_paginator("list_object_versions").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3 and [v["Key"] for p in pages for v in p.get("Versions", [])] == KEYS


def test_bad_markers_and_max_keys_zero(s3, bucket):
    fill(s3, bucket)
    for kwargs in [{"VersionIdMarker": "null"}, {"KeyMarker": "a.txt", "VersionIdMarker": "3sL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"}]:
        with pytest.raises(ClientError) as ei:
            s3.list_object_versions(Bucket=bucket, **kwargs)
        assert (error_code(ei.value), http_status(ei.value)) == ("InvalidArgument", 400), kwargs
    with pytest.raises(ClientError) as ei:
        s3.list_object_versions(Bucket=f"missing-{uuid.uuid4().hex[:12]}")
    assert error_code(ei.value) == "NoSuchBucket"
    # max-keys=0 asks for nothing, in every listing.
    r = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert (r["KeyCount"], r.get("Contents"), r["IsTruncated"]) == (0, None, False), r
    r = s3.list_objects(Bucket=bucket, MaxKeys=0)
    assert (r.get("Contents"), r["IsTruncated"]) == (None, False), r
    r = s3.list_object_versions(Bucket=bucket, MaxKeys=0)
    assert (r.get("Versions"), r["IsTruncated"]) == (None, False), r


def test_emptying_a_bucket_through_its_versions(s3, bucket, server):
    """What Terraform's force_destroy and boto3's bucket.object_versions.delete() do."""
    fill(s3, bucket)
    doomed = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        doomed += [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", [])]
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[:2] + [{"Key": "c", "VersionId": "3HL4kqtJlcpXroDTDmJ"}]})
    assert [(d["Key"], d["VersionId"]) for d in r["Deleted"]] == [("a.txt", "null"), ("b/1", "null")]
    assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [("c", "NoSuchVersion")]
    resource = boto3.session.Session(
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key, region_name=REGION
    ).resource("s3", endpoint_url=server.endpoint, config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    resource.Bucket(bucket).object_versions.delete()
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    s3.delete_bucket(Bucket=bucket)


def test_aws_cli_lists_versions(s3, bucket, server, aws_env, run):
    fill(s3, bucket)
    cp = run(["aws", "--endpoint-url", server.endpoint, "s3api", "list-object-versions", "--bucket", bucket, "--prefix", "b/"],
             env=aws_env, timeout=120)
    versions = json.loads(cp.stdout)["Versions"]
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in versions] == [(k, "null", True) for k in KEYS if k.startswith("b/")]


def test_list_buckets_in_pages(s3, bucket_name):
    tag = uuid.uuid4().hex[:8]
    names = sorted(f"lb-{tag}-{i}" for i in range(5))
    for name in names:
        s3.create_bucket(Bucket=name)
    try:
        r = s3.list_buckets(Prefix=f"lb-{tag}-", MaxBuckets=2)
        assert [b["Name"] for b in r["Buckets"]] == names[:2] and r["Prefix"] == f"lb-{tag}-" and r["ContinuationToken"]
        seen = []
        for page in s3.get_paginator("list_buckets").paginate(Prefix=f"lb-{tag}-", PaginationConfig={"PageSize": 2}):
            seen += [b["Name"] for b in page["Buckets"]]
        assert seen == names
        everything = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert set(names) <= set(everything) and "ContinuationToken" not in s3.list_buckets()
        for bad in [{"MaxBuckets": 10001}]:  # botocore itself refuses 0
            with pytest.raises(ClientError) as ei:
                s3.list_buckets(**bad)
            assert error_code(ei.value) == "InvalidArgument", bad
    finally:
        for name in names:
            s3.delete_bucket(Bucket=name)
