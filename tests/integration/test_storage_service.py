"""Storage as a service: S3 keys per tenant through the control plane and
`cloud storage keys`, buckets owned per tenant (another tenant's key gets
AccessDenied), `cloud storage mb|cp|ls|rm|rb` with the tenant's key, and, on a
3-node cluster, a key created through one node working on the others.

Real clients: boto3, aws-cli and the `cloud` binary against `cloud dev` (the
shared server) and `cloud node` processes."""
import hashlib
import json
import os
import stat
import time
import uuid

import pytest
import requests
from botocore.exceptions import ClientError

from cloudtest import (CLOUD_BIN, REGION, error_code, http_status, make_client,
                       new_credentials, payload, run, sign)
from clustertest import Cluster

PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.needs_binary


@pytest.fixture(scope="module")
def api(server, deployment):
    """The control plane on each deployment in turn: `cloud dev` (the node beside it is its storage
    service), then `cloud server` on PostgreSQL given the same node with --storage-endpoint."""
    if server.external:
        pytest.skip("needs cloud dev's control plane")
    return deployment.url


class Tenant:
    """A registered user logged in to their personal tenant."""

    def __init__(self, api, prefix):
        self.api = api
        self.email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
        r = requests.post(f"{api}/auth/register",
                          json={"email": self.email, "name": prefix, "password": PASSWORD})
        assert r.status_code == 201, r.text
        self.id = r.json()["tenant"]["id"]
        r = requests.post(f"{api}/auth/login", json={"email": self.email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        self.key = r.json()["api_key"]

    def call(self, method, path, **kwargs):
        return requests.request(method, f"{self.api}{path}", headers={"X-API-Key": self.key}, **kwargs)

    def s3_key(self, name="test"):
        r = self.call("POST", "/storage/keys", json={"name": name})
        assert r.status_code == 201, r.text
        return r.json()


def s3_for(server, key):
    return make_client(server, access_key=key["access_key_id"], secret_key=key["secret_access_key"])


def bucket_name(prefix="svc"):
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def cli_env(api, tmp_path, api_key=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUD_", "AWS_"))}
    env["CLOUD_CONFIG"] = str(tmp_path / "cloud-config")
    env["CLOUD_API_URL"] = api
    if api_key:
        env["CLOUD_API_KEY"] = api_key
    return env


def cloud(env, *args, check=True, input=None):
    return run([CLOUD_BIN, *args], env=env, check=check, input=input, timeout=60)


def denied(call):
    with pytest.raises(ClientError) as info:
        call()
    assert http_status(info.value) == 403, info.value.response
    return error_code(info.value)


def test_keys_per_tenant_and_bucket_isolation(api, server, tmp_path):
    a, b = Tenant(api, "ada"), Tenant(api, "bob")
    a1 = a.s3_key("laptop")
    assert a1["tenant_id"] == a.id and a1["endpoint"] == server.endpoint and a1["region"] == REGION
    assert a1["access_key_id"].startswith("CK") and len(a1["secret_access_key"]) >= 40
    # A second key of A through the CLI.
    out = cloud(cli_env(api, tmp_path, a.key), "storage", "keys", "create", "--name", "ci", "-o", "json").stdout
    a2 = json.loads(out)
    assert a2["tenant_id"] == a.id
    b1 = b.s3_key()

    # Listings never show secrets.
    listed = a.call("GET", "/storage/keys")
    assert listed.status_code == 200
    assert {k["access_key_id"] for k in listed.json()["keys"]} == {a1["access_key_id"], a2["access_key_id"]}
    assert "secret" not in listed.text and a1["secret_access_key"] not in listed.text
    assert {k["access_key_id"] for k in b.call("GET", "/storage/keys").json()["keys"]} == {b1["access_key_id"]}

    sa1, sa2, sb = s3_for(server, a1), s3_for(server, a2), s3_for(server, b1)
    name = bucket_name()
    sa1.create_bucket(Bucket=name)
    sa1.put_object(Bucket=name, Key="cat.jpg", Body=b"meow")

    # Every key of A may use A's bucket.
    assert sa2.get_object(Bucket=name, Key="cat.jpg")["Body"].read() == b"meow"
    sa2.put_object(Bucket=name, Key="dog.jpg", Body=b"woof")
    assert [o["Key"] for o in sa2.list_objects_v2(Bucket=name)["Contents"]] == ["cat.jpg", "dog.jpg"]

    # B's key: AccessDenied on A's bucket, for every operation.
    assert denied(lambda: sb.get_object(Bucket=name, Key="cat.jpg")) == "AccessDenied"
    assert denied(lambda: sb.put_object(Bucket=name, Key="cat.jpg", Body=b"mine")) == "AccessDenied"
    assert denied(lambda: sb.list_objects_v2(Bucket=name)) == "AccessDenied"
    assert denied(lambda: sb.list_objects(Bucket=name)) == "AccessDenied"
    assert denied(lambda: sb.delete_object(Bucket=name, Key="cat.jpg")) == "AccessDenied"
    assert denied(lambda: sb.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "cat.jpg"}]})) == "AccessDenied"
    assert denied(lambda: sb.delete_bucket(Bucket=name)) == "AccessDenied"
    assert denied(lambda: sb.create_multipart_upload(Bucket=name, Key="big")) == "AccessDenied"
    denied(lambda: sb.head_object(Bucket=name, Key="cat.jpg"))
    denied(lambda: sb.head_bucket(Bucket=name))
    mine = bucket_name("bob")
    sb.create_bucket(Bucket=mine)
    assert denied(lambda: sb.copy_object(Bucket=mine, Key="stolen", CopySource={"Bucket": name, "Key": "cat.jpg"})) == "AccessDenied"
    with pytest.raises(ClientError) as info:
        sb.create_bucket(Bucket=name)
    assert error_code(info.value) == "BucketAlreadyExists"
    # ... and B does not see it.
    assert name not in [x["Name"] for x in sb.list_buckets()["Buckets"]]
    assert [x["Name"] for x in sb.list_buckets()["Buckets"]] == [mine]
    assert name in [x["Name"] for x in sa2.list_buckets()["Buckets"]]
    assert sa1.get_object(Bucket=name, Key="cat.jpg")["Body"].read() == b"meow"

    # A multipart upload by A's second key; B cannot touch its parts.
    up = sa2.create_multipart_upload(Bucket=name, Key="big.bin")["UploadId"]
    assert denied(lambda: sb.upload_part(Bucket=name, Key="big.bin", UploadId=up, PartNumber=1, Body=b"x")) == "AccessDenied"
    assert denied(lambda: sb.list_parts(Bucket=name, Key="big.bin", UploadId=up)) == "AccessDenied"
    data = payload(5 * 1024 * 1024 + 7, seed="svc")
    etag = sa1.upload_part(Bucket=name, Key="big.bin", UploadId=up, PartNumber=1, Body=data)["ETag"]
    sa1.complete_multipart_upload(Bucket=name, Key="big.bin", UploadId=up,
                                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert sa2.get_object(Bucket=name, Key="big.bin")["Body"].read() == data

    # The root key keeps full access.
    root = make_client(server)
    assert root.get_object(Bucket=name, Key="cat.jpg")["Body"].read() == b"meow"

    # The control plane's view: buckets per tenant; another tenant's things are 404.
    assert name in [x["name"] for x in a.call("GET", "/storage/buckets").json()["buckets"]]
    assert [x["name"] for x in b.call("GET", "/storage/buckets").json()["buckets"]] == [mine]
    assert b.call("DELETE", f"/storage/buckets/{name}").status_code == 404
    assert b.call("DELETE", f"/storage/keys/{a1['access_key_id']}").status_code == 404
    assert sa1.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200

    # A deleted key is refused; the tenant's other key still works.
    assert a.call("DELETE", f"/storage/keys/{a1['access_key_id']}").status_code == 204
    with pytest.raises(ClientError) as info:
        sa1.list_buckets()
    assert error_code(info.value) == "InvalidAccessKeyId"
    assert sa2.get_object(Bucket=name, Key="cat.jpg")["Body"].read() == b"meow"


def test_aws_cli_with_a_tenant_key(api, server, tmp_path):
    a, b = Tenant(api, "aws"), Tenant(api, "other")
    key, other = a.s3_key("aws-cli"), b.s3_key()
    cfg = tmp_path / "aws-config"
    cfg.write_text(f"[default]\nregion = {REGION}\ns3 =\n  signature_version = s3v4\n  addressing_style = path\n")

    def aws(k, *args, check=True):
        env = {x: v for x, v in os.environ.items() if not x.startswith("AWS_")}
        env.update({"AWS_ACCESS_KEY_ID": k["access_key_id"], "AWS_SECRET_ACCESS_KEY": k["secret_access_key"],
                    "AWS_CONFIG_FILE": str(cfg), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")})
        return run(["aws", "--endpoint-url", server.endpoint, *args], env=env, check=check, timeout=120)

    name = bucket_name("aws")
    src = tmp_path / "report.csv"
    src.write_bytes(b"a,b\n1,2\n")
    aws(key, "s3", "mb", f"s3://{name}")
    aws(key, "s3", "cp", str(src), f"s3://{name}/2024/report.csv")
    assert "2024/report.csv" in aws(key, "s3", "ls", "--recursive", f"s3://{name}").stdout
    aws(key, "s3", "cp", f"s3://{name}/2024/report.csv", str(tmp_path / "back.csv"))
    assert (tmp_path / "back.csv").read_bytes() == src.read_bytes()
    refused = aws(other, "s3", "ls", f"s3://{name}", check=False)
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    assert name not in aws(other, "s3", "ls").stdout


def test_cloud_storage_cli_round_trip(api, server, tmp_path):
    env = cli_env(api, tmp_path)
    email = f"cli-{uuid.uuid4().hex[:10]}@example.com"
    cloud(env, "auth", "register", "--email", email, "--name", "Cli", "--password-stdin", input=PASSWORD + "\n")
    cloud(env, "auth", "login", "--email", email, "--password-stdin", input=PASSWORD + "\n")
    created = cloud(env, "storage", "keys", "create", "--name", "cli", "--save").stdout
    assert "secret access key" in created
    config = tmp_path / "cloud-config"
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    text = config.read_text()
    assert f"s3_endpoint = {server.endpoint}" in text and "s3_access_key = CK" in text and "s3_secret_key = " in text
    access_key = text.split("s3_access_key = ")[1].split("\n")[0]
    assert access_key in cloud(env, "storage", "keys", "list").stdout
    assert "s3_secret_key" not in cloud(env, "storage", "keys", "list").stdout

    name = bucket_name("cli")
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(payload(3 * 1024 * 1024 + 11, seed="cat"))
    assert f"make_bucket: s3://{name}" in cloud(env, "storage", "mb", name).stdout
    cloud(env, "storage", "cp", str(photo), f"s3://{name}/")
    cloud(env, "storage", "cp", str(photo), f"s3://{name}/2024/pet.jpg")
    listing = cloud(env, "storage", "ls", name).stdout
    assert "cat.jpg" in listing and "PRE" in listing and "2024/" in listing and str(photo.stat().st_size) in listing
    assert "2024/pet.jpg" in cloud(env, "storage", "ls", f"s3://{name}/2024/").stdout
    assert "2024/pet.jpg" in cloud(env, "storage", "ls", "--recursive", name).stdout
    assert name in cloud(env, "storage", "ls").stdout
    down = tmp_path / "down"
    down.mkdir()
    cloud(env, "storage", "cp", f"s3://{name}/2024/pet.jpg", str(down))
    assert (down / "pet.jpg").read_bytes() == photo.read_bytes()
    note = tmp_path / "note.txt"
    note.write_text("hello from the cli\n")
    cloud(env, "storage", "cp", str(note), f"s3://{name}/notes/")
    assert cloud(env, "storage", "cp", f"s3://{name}/notes/note.txt", "-").stdout == "hello from the cli\n"
    cloud(env, "storage", "cp", f"s3://{name}/cat.jpg", f"s3://{name}/copy.jpg")
    # A file larger than one piece (16 MiB) goes up as a multipart upload and comes down in ranges.
    big = tmp_path / "big.bin"
    big.write_bytes(payload(40 * 1024 * 1024 + 5, seed="big"))
    cloud(env, "storage", "cp", str(big), f"s3://{name}/big.bin")
    cloud(env, "storage", "cp", f"s3://{name}/big.bin", str(down / "big.bin"))
    assert hashlib.sha256((down / "big.bin").read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()
    assert sorted(p.name for p in down.iterdir()) == ["big.bin", "pet.jpg"], "no partial file is left"
    # The same objects through boto3 with the saved key.
    secret = text.split("s3_secret_key = ")[1].split("\n")[0]
    s3 = make_client(server, access_key=access_key, secret_key=secret)
    assert s3.get_object(Bucket=name, Key="copy.jpg")["Body"].read() == photo.read_bytes()
    assert s3.head_object(Bucket=name, Key="big.bin")["ETag"].endswith('-3"'), "uploaded in three parts"

    refused = cloud(env, "storage", "rb", name, check=False)
    assert refused.returncode != 0 and "BucketNotEmpty" in refused.stderr
    cloud(env, "storage", "rm", f"s3://{name}/cat.jpg")
    missing = cloud(env, "storage", "rm", f"s3://{name}/cat.jpg", check=False)
    assert missing.returncode != 0 and "no such object" in missing.stderr
    cloud(env, "storage", "rm", "--recursive", f"s3://{name}/")
    assert cloud(env, "storage", "ls", name).stdout.strip() == ""
    assert f"remove_bucket: s3://{name}" in cloud(env, "storage", "rb", name).stdout

    # Another tenant's bucket: a clear refusal.
    other = Tenant(api, "someone")
    theirs = bucket_name("theirs")
    s3_for(server, other.s3_key()).create_bucket(Bucket=theirs)
    refused = cloud(env, "storage", "ls", theirs, check=False)
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr

    # Deleting the saved key removes it from the config; S3 then refuses it.
    assert "deleted" in cloud(env, "storage", "keys", "delete", access_key).stdout
    assert "s3_access_key" not in config.read_text()
    gone = cloud(env, "storage", "ls", "--access-key", access_key, "--secret-key", secret, check=False)
    assert gone.returncode != 0 and "InvalidAccessKeyId" in gone.stderr
    nokey = cloud(env, "storage", "ls", check=False)
    assert nokey.returncode != 0 and "cloud storage keys create --save" in nokey.stderr


def admin(node, method, path, body=None):
    """A request to the storage admin API, signed with the root key."""
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"Host": node.hostport}
    if body is not None:
        headers["Content-Type"] = "application/json"
    signed = sign(method, "/_admin" + path, [], headers, hashlib.sha256(data).hexdigest(),
                  node.access_key, node.secret_key)
    return requests.request(method, f"{node.endpoint}/_admin{path}", headers=signed.headers, data=data, timeout=30)


def test_admin_api_refuses_bad_input_and_other_keys(api, server):
    r = admin(server, "POST", "/tenants/tnt_x/buckets", {"name": "Not_Valid"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidBucketName"
    r = admin(server, "POST", "/tenants/tnt_x/keys", {"name": "x", "admin": True})
    assert r.status_code == 400 and r.json()["error"]["code"] == "UnknownField"
    r = admin(server, "DELETE", "/tenants/tnt_x/keys/CKNOSUCHKEY")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NoSuchAccessKey"
    # A tenant's key is no admin key.
    key = Tenant(api, "notadmin").s3_key()

    class AsTenant:
        hostport, endpoint = server.hostport, server.endpoint
        access_key, secret_key = key["access_key_id"], key["secret_access_key"]
    assert admin(AsTenant, "GET", f"/tenants/{key['tenant_id']}/keys").status_code == 403


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ak, sk = new_credentials()
    cluster = Cluster(tmp_path_factory.mktemp("svc-cluster"), 3, ak, sk)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.shutdown()


@pytest.mark.deadline(300)
def test_a_key_created_through_one_node_works_on_every_node(cluster):
    a, b, c = cluster.nodes
    r = admin(a, "POST", "/tenants/tnt_cluster/keys", {"name": "everywhere"})
    assert r.status_code == 201, r.text
    key = r.json()
    other = admin(b, "POST", "/tenants/tnt_other/keys", {}).json()
    listed = admin(c, "GET", "/tenants/tnt_cluster/keys").json()["keys"]
    assert [k["accessKeyId"] for k in listed] == [key["accessKeyId"]]
    assert "secretAccessKey" not in json.dumps(listed)

    def s3(node, k):
        return make_client(node, access_key=k["accessKeyId"], secret_key=k["secretAccessKey"])

    name = bucket_name("cl")
    s3(b, key).create_bucket(Bucket=name)
    s3(c, key).put_object(Bucket=name, Key="x", Body=b"through c")
    assert s3(a, key).get_object(Bucket=name, Key="x")["Body"].read() == b"through c"
    assert name in [x["Name"] for x in s3(a, key).list_buckets()["Buckets"]]
    for node in (a, b, c):
        assert denied(lambda: s3(node, other).get_object(Bucket=name, Key="x")) == "AccessDenied"
        assert name not in [x["Name"] for x in s3(node, other).list_buckets()["Buckets"]]
    # A bucket made through the admin API of one node is the tenant's on another.
    r = admin(c, "POST", "/tenants/tnt_cluster/buckets", {"name": name + "-admin"})
    assert r.status_code == 201, r.text
    s3(a, key).put_object(Bucket=name + "-admin", Key="y", Body=b"y")

    # Deleted through one node: refused everywhere (other nodes cache a key for 2 s at most).
    assert admin(c, "DELETE", f"/tenants/tnt_cluster/keys/{key['accessKeyId']}").status_code == 204
    for node in (a, b, c):
        deadline = time.time() + 10
        while True:
            try:
                s3(node, key).list_buckets()
            except ClientError as e:
                assert error_code(e) == "InvalidAccessKeyId"
                break
            assert time.time() < deadline, f"{node.name} still accepts a deleted key"
            time.sleep(0.3)
