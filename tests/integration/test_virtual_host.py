"""Virtual-hosted-style addressing on a server started with --domain."""
import uuid

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from cloudtest import (REGION, error_code, make_client, md5_hex, payload,
                       parse_error)


@pytest.fixture(scope="module")
def vclient(vhost_server):
    return make_client(vhost_server, addressing_style="virtual")


def signed_send(server, method, bucket, path="/", body=b"", params=""):
    """botocore's own SigV4 signer with Host bucket.domain:port, sent to
    the loopback address with requests."""
    host = f"{bucket}.{server.domain}:{server.port}"
    url = f"http://{host}{path}" + (f"?{params}" if params else "")
    req = AWSRequest(method=method, url=url, data=body)
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3",
                REGION).add_auth(req)
    headers = dict(req.headers)
    headers["Host"] = host
    target = f"{server.endpoint}{path}" + (f"?{params}" if params else "")
    return requests.request(method, target, data=body, headers=headers,
                            timeout=30)


def test_virtual_hosted_with_boto3(vclient, vhost_server):
    bucket = f"vh-{uuid.uuid4().hex[:16]}"
    vclient.create_bucket(Bucket=bucket)
    body = payload(20_000, seed="vh")
    put = vclient.put_object(Bucket=bucket, Key="dir/file one.txt",
                             Body=body)
    assert put["ETag"] == f'"{md5_hex(body)}"'
    assert vclient.get_object(Bucket=bucket,
                              Key="dir/file one.txt")["Body"].read() == body
    listed = vclient.list_objects_v2(Bucket=bucket, Prefix="dir/")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/file one.txt"]
    # the same bucket through path style on the same server
    path_client = make_client(vhost_server)
    assert path_client.get_object(
        Bucket=bucket, Key="dir/file one.txt")["Body"].read() == body
    vclient.delete_object(Bucket=bucket, Key="dir/file one.txt")
    vclient.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as ei:
        path_client.head_bucket(Bucket=bucket)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_virtual_hosted_with_requests(vhost_server):
    bucket = f"vr-{uuid.uuid4().hex[:16]}"
    r = signed_send(vhost_server, "PUT", bucket)
    assert r.status_code == 200, r.text
    body = b"virtual hosted body"
    r = signed_send(vhost_server, "PUT", bucket, "/k1", body)
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == f'"{md5_hex(body)}"'
    r = signed_send(vhost_server, "GET", bucket, "/k1")
    assert r.status_code == 200
    assert r.content == body
    r = signed_send(vhost_server, "GET", bucket, "/", params="list-type=2")
    assert r.status_code == 200
    assert b"<Key>k1</Key>" in r.content
    assert f"<Name>{bucket}</Name>".encode() in r.content


def test_virtual_hosted_missing_bucket(vhost_server):
    r = signed_send(vhost_server, "GET", f"nope-{uuid.uuid4().hex[:12]}",
                    "/key")
    assert r.status_code == 404
    assert parse_error(r.content)["Code"] == "NoSuchBucket"
