"""s3cmd 2.3.0 (Debian) with a private config file, SigV4, plain HTTP."""
import re
import uuid

import pytest
from botocore.exceptions import ClientError

from cloudtest import MiB, REGION, md5_hex, multipart_etag, payload

S3CMD = "/usr/bin/s3cmd"


@pytest.fixture
def s3cmd(server, run, tmp_path):
    cfg = tmp_path / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {server.access_key}\n"
        f"secret_key = {server.secret_key}\n"
        f"host_base = {server.hostport}\n"
        f"host_bucket = {server.hostport}\n"
        f"bucket_location = {REGION}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
        "socket_timeout = 60\n"
        "max_retries = 1\n"
        "progress_meter = False\n")

    def call(*args, timeout=300, check=True):
        return run([S3CMD, "-c", str(cfg), *args], timeout=timeout,
                   check=check)
    return call


# moto_gap: moto fails GET ?acl (s3cmd info) on multipart objects with 500
@pytest.mark.moto_gap
@pytest.mark.deadline(600)
def test_s3cmd_full_cycle(s3cmd, s3, tmp_path):
    bucket = f"sc-{uuid.uuid4().hex[:20]}"
    s3cmd("mb", f"s3://{bucket}")
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    small = tmp_path / "small.txt"
    small_data = b"small s3cmd payload\n" * 10
    small.write_bytes(small_data)
    big = tmp_path / "big.bin"
    big_data = payload(20 * MiB, seed="s3cmd-20")
    big.write_bytes(big_data)

    s3cmd("put", str(small), f"s3://{bucket}/small.txt")
    s3cmd("put", "--multipart-chunk-size-mb=5", str(big),
          f"s3://{bucket}/dir/big.bin")

    head = s3.head_object(Bucket=bucket, Key="small.txt")
    assert head["ETag"] == f'"{md5_hex(small_data)}"'
    head = s3.head_object(Bucket=bucket, Key="dir/big.bin")
    parts = [big_data[i:i + 5 * MiB] for i in range(0, 20 * MiB, 5 * MiB)]
    assert head["ETag"] == multipart_etag(parts)
    assert head["ContentLength"] == 20 * MiB

    ls = s3cmd("ls", f"s3://{bucket}").stdout
    assert f"s3://{bucket}/small.txt" in ls
    assert re.search(rf"DIR\s+s3://{bucket}/dir/", ls), ls
    la = s3cmd("ls", "--recursive", f"s3://{bucket}").stdout
    sizes = {}
    for line in la.splitlines():
        cols = line.split()
        sizes[cols[-1]] = int(cols[2])
    assert sizes == {f"s3://{bucket}/small.txt": len(small_data),
                     f"s3://{bucket}/dir/big.bin": 20 * MiB}

    info = s3cmd("info", f"s3://{bucket}/small.txt").stdout
    assert re.search(r"File size:\s+%d" % len(small_data), info), info
    assert md5_hex(small_data) in info
    info = s3cmd("info", f"s3://{bucket}/dir/big.bin").stdout
    assert re.search(r"File size:\s+%d" % (20 * MiB), info), info
    # s3cmd records the real md5 of multipart uploads in its metadata
    assert md5_hex(big_data) in info

    out_small = tmp_path / "got-small.txt"
    out_big = tmp_path / "got-big.bin"
    s3cmd("get", f"s3://{bucket}/small.txt", str(out_small))
    s3cmd("get", f"s3://{bucket}/dir/big.bin", str(out_big))
    assert out_small.read_bytes() == small_data
    assert out_big.read_bytes() == big_data

    cp = s3cmd("rb", f"s3://{bucket}", check=False)
    assert cp.returncode != 0, "rb of a non-empty bucket must fail"
    assert "BucketNotEmpty" in cp.stderr or "not empty" in cp.stderr.lower()

    s3cmd("del", f"s3://{bucket}/small.txt")
    s3cmd("del", f"s3://{bucket}/dir/big.bin")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    s3cmd("rb", f"s3://{bucket}")
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=bucket)
