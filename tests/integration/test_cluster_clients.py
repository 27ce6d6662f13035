"""aws-cli, boto3, rclone and s3cmd against a 3-node cluster, each step
through a different node."""
import hashlib
import os

import pytest

from cloudtest import MiB, REGION, md5_hex, payload, run
from clustertest import Cluster
from cloudtest import new_credentials

pytestmark = [pytest.mark.needs_binary]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ak, sk = new_credentials()
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), 3, ak, sk)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.shutdown()


def aws_env(node, tmp_path):
    cfg = tmp_path / "aws-config"
    cfg.write_text(f"[default]\nregion = {REGION}\ns3 =\n"
                   "  signature_version = s3v4\n  addressing_style = path\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": node.access_key,
                "AWS_SECRET_ACCESS_KEY": node.secret_key,
                "AWS_CONFIG_FILE": str(cfg),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")})
    return env


def aws(node, tmp_path, *args):
    return run(["aws", "--endpoint-url", node.endpoint,
                "--cli-connect-timeout", "10", "--cli-read-timeout", "120",
                *args], env=aws_env(node, tmp_path), timeout=300)


@pytest.mark.deadline(400)
def test_aws_cli_through_different_nodes(cluster, tmp_path):
    a, b, c = cluster.nodes
    src = tmp_path / "src"
    src.mkdir()
    files = {"big.bin": payload(20 * MiB + 3, seed="cl-big"),
             "dir/small.txt": b"hello cluster\n",
             "dir/mid.bin": payload(300_000, seed="cl-mid")}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    aws(a, tmp_path, "s3", "mb", "s3://awscli-cluster")
    # 20 MiB goes multipart (8 MiB parts) through node a.
    aws(a, tmp_path, "s3", "cp", "--recursive", str(src), "s3://awscli-cluster/")
    listing = aws(b, tmp_path, "s3", "ls", "--recursive", "s3://awscli-cluster/").stdout
    for rel in files:
        assert rel in listing
    dst = tmp_path / "dst"
    aws(c, tmp_path, "s3", "cp", "--recursive", "s3://awscli-cluster/", str(dst))
    for rel, data in files.items():
        assert (dst / rel).read_bytes() == data, rel
    # sync through b finds nothing to do.
    out = aws(b, tmp_path, "s3", "sync", str(src), "s3://awscli-cluster/").stdout
    assert "upload:" not in out
    aws(c, tmp_path, "s3", "rm", "--recursive", "s3://awscli-cluster/")
    aws(a, tmp_path, "s3", "rb", "s3://awscli-cluster")


@pytest.mark.deadline(300)
def test_boto3_multipart_parts_through_three_nodes(cluster):
    clients = [n.client() for n in cluster.nodes]
    clients[0].create_bucket(Bucket="boto-cluster")
    upload = clients[0].create_multipart_upload(Bucket="boto-cluster", Key="mp")
    parts = [payload(5 * MiB, seed=f"p{i}") for i in range(3)] + [b"tail"]
    done = []
    for i, body in enumerate(parts):
        r = clients[i % 3].upload_part(Bucket="boto-cluster", Key="mp", PartNumber=i + 1,
                                       UploadId=upload["UploadId"], Body=body)
        done.append({"PartNumber": i + 1, "ETag": r["ETag"]})
    listed = clients[2].list_parts(Bucket="boto-cluster", Key="mp", UploadId=upload["UploadId"])
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2, 3, 4]
    uploads = clients[1].list_multipart_uploads(Bucket="boto-cluster")["Uploads"]
    assert [u["UploadId"] for u in uploads] == [upload["UploadId"]]
    clients[1].complete_multipart_upload(Bucket="boto-cluster", Key="mp", UploadId=upload["UploadId"],
                                         MultipartUpload={"Parts": done})
    whole = b"".join(parts)
    for client in clients:
        body = client.get_object(Bucket="boto-cluster", Key="mp")["Body"].read()
        assert hashlib.md5(body).hexdigest() == md5_hex(whole)
        ranged = client.get_object(Bucket="boto-cluster", Key="mp", Range="bytes=5242870-5242889")
        assert ranged["Body"].read() == whole[5242870:5242890]
    assert clients[2].list_multipart_uploads(Bucket="boto-cluster").get("Uploads", []) == []
    # Copy through another node shares the blocks.
    clients[2].copy_object(Bucket="boto-cluster", Key="mp-copy", CopySource={"Bucket": "boto-cluster", "Key": "mp"})
    assert clients[0].head_object(Bucket="boto-cluster", Key="mp-copy")["ContentLength"] == len(whole)


@pytest.mark.deadline(400)
def test_rclone_copy_and_check_through_different_nodes(cluster, tmp_path):
    a, b, c = cluster.nodes

    def rclone(node, *args):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
        env.update({
            "RCLONE_CONFIG": str(tmp_path / "none.conf"),
            "RCLONE_CONFIG_CLOUD_TYPE": "s3", "RCLONE_CONFIG_CLOUD_PROVIDER": "Other",
            "RCLONE_CONFIG_CLOUD_ENDPOINT": node.endpoint,
            "RCLONE_CONFIG_CLOUD_ACCESS_KEY_ID": node.access_key,
            "RCLONE_CONFIG_CLOUD_SECRET_ACCESS_KEY": node.secret_key,
            "RCLONE_CONFIG_CLOUD_REGION": REGION, "RCLONE_CONFIG_CLOUD_FORCE_PATH_STYLE": "true",
        })
        return run(["rclone", "--contimeout", "10s", "--timeout", "120s", "--retries", "1",
                    "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", *args], env=env, timeout=300)

    src = tmp_path / "tree"
    for i in range(12):
        p = src / f"d{i % 3}" / f"f{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(payload(1000 * i * i + 1, seed=f"rc{i}"))
    (src / "large.bin").write_bytes(payload(12 * MiB, seed="rc-large"))
    rclone(a, "mkdir", "cloud:rclone-cluster")
    rclone(a, "copy", str(src), "cloud:rclone-cluster")
    rclone(b, "check", str(src), "cloud:rclone-cluster")
    out = tmp_path / "out"
    rclone(c, "copy", "cloud:rclone-cluster", str(out))
    run(["diff", "-r", str(src), str(out)])
    rclone(c, "purge", "cloud:rclone-cluster")


@pytest.mark.deadline(300)
def test_s3cmd_through_different_nodes(cluster, tmp_path):
    a, b, _ = cluster.nodes

    def s3cmd(node, *args):
        cfg = tmp_path / f"s3cfg-{node.name}"
        cfg.write_text(
            "[default]\n"
            f"access_key = {node.access_key}\nsecret_key = {node.secret_key}\n"
            f"host_base = {node.hostport}\nhost_bucket = {node.hostport}\n"
            "use_https = False\nsignature_v2 = False\n"
            f"bucket_location = {REGION}\n")
        return run(["s3cmd", "-c", str(cfg), *args], timeout=180)

    f = tmp_path / "s3cmd.bin"
    f.write_bytes(payload(6 * MiB, seed="s3cmd-cluster"))
    s3cmd(a, "mb", "s3://s3cmd-cluster")
    s3cmd(a, "put", "--multipart-chunk-size-mb=5", str(f), "s3://s3cmd-cluster/x.bin")
    got = tmp_path / "got.bin"
    s3cmd(b, "get", "s3://s3cmd-cluster/x.bin", str(got))
    assert got.read_bytes() == f.read_bytes()
    assert "x.bin" in s3cmd(b, "ls", "s3://s3cmd-cluster").stdout


@pytest.mark.deadline(200)
def test_versions_listing_and_emptying_through_different_nodes(cluster):
    """ListObjectVersions of an unversioned bucket in a cluster, paged through two nodes, and the
    bucket emptied by VersionId through a third, as Terraform's force_destroy does."""
    clients = [n.client() for n in cluster.nodes]
    clients[0].create_bucket(Bucket="versions-cluster")
    keys = [f"k/{i:02d}" for i in range(7)]
    for i, key in enumerate(keys):
        clients[i % 3].put_object(Bucket="versions-cluster", Key=key, Body=key.encode())
    first = clients[1].list_object_versions(Bucket="versions-cluster", MaxKeys=4)
    assert [v["Key"] for v in first["Versions"]] == keys[:4] and first["NextVersionIdMarker"] == "null"
    rest = clients[2].list_object_versions(Bucket="versions-cluster", KeyMarker=first["NextKeyMarker"], VersionIdMarker="null")
    assert [(v["Key"], v["VersionId"]) for v in rest["Versions"]] == [(k, "null") for k in keys[4:]]
    doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in first["Versions"] + rest["Versions"]]
    deleted = clients[0].delete_objects(Bucket="versions-cluster", Delete={"Objects": doomed})["Deleted"]
    assert sorted(d["Key"] for d in deleted) == keys
    assert clients[1].list_object_versions(Bucket="versions-cluster").get("Versions") is None
    clients[2].delete_bucket(Bucket="versions-cluster")
