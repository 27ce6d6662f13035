"""aws-cli v1 (botocore 1.43: CRC32 flexible checksums by default)."""
import hashlib
import json
import urllib.request
import uuid
from pathlib import Path

import pytest

from cloudtest import (MiB, crc32c_b64, crc64nvme_b64, md5_hex,
                       multipart_etag, payload, sha256_b64)

TIMEOUTS = ["--cli-connect-timeout", "10", "--cli-read-timeout", "120"]


@pytest.fixture
def aws(server, aws_env, run):
    def call(*args, timeout=180, check=True, json_out=False):
        cmd = ["aws", "--endpoint-url", server.endpoint, *TIMEOUTS, *args]
        cp = run(cmd, env=aws_env, timeout=timeout, check=check)
        if json_out:
            return json.loads(cp.stdout) if cp.stdout.strip() else {}
        return cp
    return call


def new_bucket():
    return f"cli-{uuid.uuid4().hex[:20]}"


def test_mb_ls_rb(aws, s3):
    b = new_bucket()
    out = aws("s3", "mb", f"s3://{b}").stdout
    assert f"make_bucket: {b}" in out
    assert b in [x["Name"] for x in s3.list_buckets()["Buckets"]]
    listing = aws("s3", "ls").stdout
    assert any(line.split()[-1] == b for line in listing.splitlines())
    out = aws("s3", "rb", f"s3://{b}").stdout
    assert f"remove_bucket: {b}" in out
    assert b not in [x["Name"] for x in s3.list_buckets()["Buckets"]]


@pytest.mark.deadline(400)
@pytest.mark.parametrize("size", [1024, 20 * MiB], ids=["1KiB", "20MiB"])
def test_cp_up_and_down(aws, s3, tmp_path, size):
    b = new_bucket()
    aws("s3", "mb", f"s3://{b}")
    src = tmp_path / "src.bin"
    data = payload(size, seed=f"cli{size}")
    src.write_bytes(data)
    aws("s3", "cp", str(src), f"s3://{b}/dir/file.bin")
    head = s3.head_object(Bucket=b, Key="dir/file.bin",
                          ChecksumMode="ENABLED")
    assert head["ContentLength"] == size
    if size < 8 * MiB:
        assert head["ETag"] == f'"{md5_hex(data)}"'
    else:
        # aws-cli default: 8 MiB parts -> 8 + 8 + 4
        parts = [data[i:i + 8 * MiB] for i in range(0, size, 8 * MiB)]
        assert head["ETag"] == multipart_etag(parts)
    dst = tmp_path / "dst.bin"
    aws("s3", "cp", f"s3://{b}/dir/file.bin", str(dst))
    assert dst.read_bytes() == data
    ls = aws("s3", "ls", f"s3://{b}/dir/").stdout
    assert ls.split()[-2:] == [str(size), "file.bin"]


def make_tree(root):
    files = {
        "a.txt": b"alpha\n",
        "sub/b.bin": payload(5000, seed="b"),
        "sub/deeper/c.txt": b"gamma" * 100,
        "with space/d e.txt": b"space",
        "empty.dat": b"",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def read_tree(root):
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.deadline(300)
def test_sync_both_ways_and_rm_recursive(aws, s3, tmp_path):
    b = new_bucket()
    aws("s3", "mb", f"s3://{b}")
    up = tmp_path / "up"
    files = make_tree(up)
    aws("s3", "sync", str(up), f"s3://{b}/tree")
    keys = sorted(o["Key"] for o in
                  s3.list_objects_v2(Bucket=b)["Contents"])
    assert keys == sorted(f"tree/{k}" for k in files)
    for rel, data in files.items():
        assert s3.get_object(Bucket=b,
                             Key=f"tree/{rel}")["Body"].read() == data

    # a second sync uploads nothing
    again = aws("s3", "sync", str(up), f"s3://{b}/tree").stdout
    assert "upload:" not in again

    # change one file remotely, add one, then sync down
    s3.put_object(Bucket=b, Key="tree/new.txt", Body=b"new remote file")
    down = tmp_path / "down"
    aws("s3", "sync", f"s3://{b}/tree", str(down))
    expected = dict(files)
    expected["new.txt"] = b"new remote file"
    assert read_tree(down) == expected

    out = aws("s3", "rm", f"s3://{b}/tree", "--recursive").stdout
    assert out.count("delete:") == len(expected)
    assert s3.list_objects_v2(Bucket=b)["KeyCount"] == 0
    aws("s3", "rb", f"s3://{b}")


@pytest.mark.parametrize("algo,fn", [
    ("CRC32C", crc32c_b64), ("SHA256", sha256_b64),
    ("CRC64NVME", crc64nvme_b64)])
def test_put_object_checksum_algorithms(aws, s3, tmp_path, algo, fn):
    b = new_bucket()
    aws("s3", "mb", f"s3://{b}")
    data = payload(40_000, seed=algo)
    src = tmp_path / "f"
    src.write_bytes(data)
    put = aws("s3api", "put-object", "--bucket", b, "--key", "ck",
              "--body", str(src), "--checksum-algorithm", algo,
              json_out=True)
    field = f"Checksum{algo}"
    assert put[field] == fn(data)
    assert put["ETag"] == f'"{md5_hex(data)}"'
    head = aws("s3api", "head-object", "--bucket", b, "--key", "ck",
               "--checksum-mode", "ENABLED", json_out=True)
    assert head[field] == fn(data)
    assert head["ContentLength"] == len(data)
    out = tmp_path / "out"
    aws("s3api", "get-object", "--bucket", b, "--key", "ck",
        "--checksum-mode", "ENABLED", str(out))
    assert out.read_bytes() == data


def test_list_objects_v2_prefix_delimiter(aws, s3):
    b = new_bucket()
    aws("s3", "mb", f"s3://{b}")
    for k in ("photos/2020/a.jpg", "photos/2021/b.jpg", "photos/c.jpg",
              "docs/d.txt", "root.txt"):
        s3.put_object(Bucket=b, Key=k, Body=k.encode())
    res = aws("s3api", "list-objects-v2", "--bucket", b, "--prefix",
              "photos/", "--delimiter", "/", json_out=True)
    assert [o["Key"] for o in res["Contents"]] == ["photos/c.jpg"]
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == \
        ["photos/2020/", "photos/2021/"]
    res = aws("s3api", "list-objects-v2", "--bucket", b, "--delimiter", "/",
              json_out=True)
    assert [o["Key"] for o in res["Contents"]] == ["root.txt"]
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == \
        ["docs/", "photos/"]
    # aws-cli pages for us with a small page size
    res = aws("s3api", "list-objects-v2", "--bucket", b, "--page-size", "2",
              json_out=True)
    assert [o["Key"] for o in res["Contents"]] == sorted(
        ["photos/2020/a.jpg", "photos/2021/b.jpg", "photos/c.jpg",
         "docs/d.txt", "root.txt"])


def test_presign_then_urllib(aws, s3):
    b = new_bucket()
    aws("s3", "mb", f"s3://{b}")
    data = payload(12_345, seed="cli-presign")
    s3.put_object(Bucket=b, Key="p/obj", Body=data)
    url = aws("s3", "presign", f"s3://{b}/p/obj", "--expires-in",
              "300").stdout.strip()
    assert "X-Amz-Signature=" in url, url
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        assert r.read() == data


def test_cp_missing_key_fails(aws, tmp_path):
    b = new_bucket()
    aws("s3", "mb", f"s3://{b}")
    cp = aws("s3", "cp", f"s3://{b}/missing", str(tmp_path / "x"),
             check=False)
    assert cp.returncode != 0
    assert "404" in cp.stderr or "Not Found" in cp.stderr
    assert not (tmp_path / "x").exists()
