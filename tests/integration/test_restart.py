"""Graceful restart on the same data dir; generated root credentials."""
import hashlib
import itertools
import os
import re
import stat
import uuid

import pytest
from botocore.exceptions import ClientError

from cloudtest import (MiB, http_status, make_client, md5_hex,
                       multipart_etag, new_credentials, payload)

pytestmark = pytest.mark.needs_binary


def snapshot(s3):
    """Everything a user can see: buckets, keys, bytes, metadata."""
    out = {}
    for b in s3.list_buckets()["Buckets"]:
        name = b["Name"]
        objs = {}
        for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=name):
            for o in page.get("Contents", []):
                got = s3.get_object(Bucket=name, Key=o["Key"])
                body = got["Body"].read()
                objs[o["Key"]] = {
                    "sha256": hashlib.sha256(body).hexdigest(),
                    "len": len(body), "etag": got["ETag"],
                    "size": o["Size"], "list_etag": o["ETag"],
                    "type": got["ContentType"], "meta": got["Metadata"],
                    "modified": got["LastModified"]}
        out[name] = objs
    return out


@pytest.mark.deadline(400)
def test_restart_keeps_everything(fresh_server_factory):
    ak, sk = new_credentials()
    srv = fresh_server_factory(access_key=ak, secret_key=sk).start()
    s3 = make_client(srv)
    b1, b2 = f"keep-{uuid.uuid4().hex[:12]}", f"keep2-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=b1)
    s3.create_bucket(Bucket=b2)
    expected = {
        (b1, "empty"): b"",
        (b1, "one"): b"1",
        (b1, "dir/six-mib.bin"): payload(6 * MiB, seed="r6"),
        (b1, "unicode/é 漢字 +&=%.txt"): b"unicode key",
        (b2, "meta"): b"with metadata",
    }
    for (b, k), data in expected.items():
        kw = {}
        if k == "meta":
            kw = {"Metadata": {"color": "red"}, "ContentType": "text/x-meta"}
        s3.put_object(Bucket=b, Key=k, Body=data, **kw)
    # a completed multipart object
    parts = [payload(5 * MiB, seed="rp1"), payload(1 * MiB, seed="rp2")]
    uid = s3.create_multipart_upload(Bucket=b1, Key="mp")["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(
        Bucket=b1, Key="mp", UploadId=uid, PartNumber=n, Body=p)["ETag"]}
        for n, p in enumerate(parts, 1)]
    s3.complete_multipart_upload(Bucket=b1, Key="mp", UploadId=uid,
                                 MultipartUpload={"Parts": done})
    expected[(b1, "mp")] = b"".join(parts)
    # an overwritten and a deleted object
    s3.put_object(Bucket=b1, Key="over", Body=b"old")
    s3.put_object(Bucket=b1, Key="over", Body=b"new")
    expected[(b1, "over")] = b"new"
    s3.put_object(Bucket=b1, Key="deleted", Body=b"gone")
    s3.delete_object(Bucket=b1, Key="deleted")
    # an upload in progress
    pending = s3.create_multipart_upload(Bucket=b2, Key="pending")["UploadId"]
    first = payload(5 * MiB, seed="pend1")
    e1 = s3.upload_part(Bucket=b2, Key="pending", UploadId=pending,
                        PartNumber=1, Body=first)["ETag"]

    before = snapshot(s3)
    assert srv.stop() == 0, "graceful SIGTERM shutdown exits 0"

    srv.start()
    s3 = make_client(srv)
    after = snapshot(s3)
    assert after == before
    for (b, k), data in expected.items():
        assert after[b][k]["sha256"] == hashlib.sha256(data).hexdigest(), k
        assert after[b][k]["len"] == len(data)
    assert after[b1]["mp"]["etag"] == multipart_etag(parts)
    assert after[b1]["one"]["etag"] == f'"{md5_hex(b"1")}"'
    assert after[b2]["meta"]["meta"] == {"color": "red"}
    assert "deleted" not in after[b1]

    # the in-progress upload survived and can be finished
    ups = s3.list_multipart_uploads(Bucket=b2).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in ups] == [("pending", pending)]
    second = b"tail"
    e2 = s3.upload_part(Bucket=b2, Key="pending", UploadId=pending,
                        PartNumber=2, Body=second)["ETag"]
    s3.complete_multipart_upload(
        Bucket=b2, Key="pending", UploadId=pending,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                   {"PartNumber": 2, "ETag": e2}]})
    assert s3.get_object(Bucket=b2, Key="pending")["Body"].read() == \
        first + second

    # and new writes work after the restart
    s3.put_object(Bucket=b1, Key="post-restart", Body=b"fresh")
    assert s3.get_object(Bucket=b1, Key="post-restart")["Body"].read() == \
        b"fresh"
    assert srv.stop() == 0


TOKEN = re.compile(r"[A-Za-z0-9/+=_\-]{16,128}")


def find_credentials(srv, text):
    """Find the access/secret pair printed in `text` by trying candidate
    pairs against the server (no assumption about the output format)."""
    tokens = list(dict.fromkeys(TOKEN.findall(text)))
    near = [t for t in tokens
            if re.search(r"(?i)(access|secret|key)[^\n]{0,80}" + re.escape(t),
                         text)]
    for cands in (near, tokens):
        for ak, sk in itertools.permutations(cands, 2):
            if len(ak) > 40:
                continue
            try:
                make_client(srv, access_key=ak, secret_key=sk).list_buckets()
                return ak, sk
            except ClientError:
                continue
    return None


@pytest.mark.deadline(300)
def test_generated_credentials_persist(fresh_server_factory, tmp_path):
    srv = fresh_server_factory(name="nocreds")
    srv.start(with_credentials=False)
    out1 = srv.output(1)
    creds = find_credentials(srv, out1)
    assert creds, ("first start without CLOUD_ROOT_* must print a working "
                   f"access/secret key pair; output was:\n{out1[-3000:]}")
    ak, sk = creds
    s3 = make_client(srv, access_key=ak, secret_key=sk)
    b = f"cred-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"v")

    # the pair is kept in the data dir, readable by the owner only
    holders = []
    for root, _, names in os.walk(srv.data_dir):
        for n in names:
            p = os.path.join(root, n)
            try:
                if os.path.getsize(p) > 1 << 20:
                    continue
                with open(p, "rb") as f:
                    if sk.encode() in f.read():
                        holders.append(p)
            except OSError:
                pass
    assert holders, "the generated secret is stored in the data dir"
    for p in holders:
        mode = stat.S_IMODE(os.stat(p).st_mode)
        assert mode == 0o600, f"{p} has mode {oct(mode)}, want 0600"

    assert srv.stop() == 0
    srv.start(with_credentials=False)
    out2 = srv.output(2)
    assert sk not in out2, "the secret is printed only when generated"
    s3 = make_client(srv, access_key=ak, secret_key=sk)
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"v"
    with pytest.raises(ClientError) as ei:
        make_client(srv, access_key=ak,
                    secret_key="wrong" + sk[5:]).list_buckets()
    assert http_status(ei.value) == 403
