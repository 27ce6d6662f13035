"""Error responses, authentication, and hostile or broken requests."""
import base64
import datetime as dt
import hashlib
import os
import socket
import time

import pytest
import requests
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from cloudtest import (EMPTY_SHA256, REGION, STREAMING, UNSIGNED as
                       UNSIGNED_PAYLOAD, aws_chunked_body,
                       aws_chunked_length, crc32_b64, error_code,
                       http_status, make_client, md5_hex, parse_error,
                       payload, raw_request, resp_headers, sign)


def test_own_sigv4_helper_matches_aws_reference_example():
    """The hand-rolled signer used below reproduces the AWS documentation's
    streaming-upload example (seed, first chunk and final chunk)."""
    now = dt.datetime(2013, 5, 24, tzinfo=dt.timezone.utc)
    headers = {"Host": "s3.amazonaws.com",
               "x-amz-storage-class": "REDUCED_REDUNDANCY",
               "Content-Encoding": "aws-chunked",
               "x-amz-decoded-content-length": "66560",
               "Content-Length": "66824"}
    signed = sign("PUT", "/examplebucket/chunkObject.txt", [], headers,
                  STREAMING, "AKIAIOSFODNN7EXAMPLE",
                  "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", now=now)
    assert signed.signature == \
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    body = aws_chunked_body(signed, b"a" * 66560)
    assert len(body) == 66824 == aws_chunked_length(66560)
    assert body.startswith(
        b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307"
        b"b0ade35a65485a288648\r\n")
    assert body.endswith(
        b"0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ce"
        b"b9323e279d449df9\r\n\r\n")


# ------------------------------------------------------- error documents

@pytest.mark.moto_gap
def test_no_such_key_error_document(server, s3, bucket):
    status, headers, body = raw_request(server, "GET", f"/{bucket}/nope/key")
    assert status == 404
    err = parse_error(body)
    assert err["Code"] == "NoSuchKey"
    assert err["Message"]
    assert err["RequestId"]
    assert err["RequestId"] == headers["x-amz-request-id"]
    assert err.get("Resource", err.get("Key")) in (
        f"/{bucket}/nope/key", "nope/key")
    assert headers["content-type"].startswith(("application/xml",
                                               "text/xml"))


@pytest.mark.moto_gap
def test_no_such_key_error_has_resource(server, s3, bucket):
    _, _, body = raw_request(server, "GET", f"/{bucket}/missing")
    assert parse_error(body)["Resource"] == f"/{bucket}/missing"


@pytest.mark.moto_gap
def test_no_such_bucket_error_document(server, bucket_name):
    name = bucket_name("absent")
    status, headers, body = raw_request(server, "GET", f"/{name}/key")
    assert status == 404
    err = parse_error(body)
    assert err["Code"] == "NoSuchBucket"
    assert err["Message"]
    assert err["RequestId"] == headers["x-amz-request-id"]


def test_boto3_sees_no_such_key_and_bucket(s3, bucket, bucket_name):
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key="missing")
    assert error_code(ei.value) == "NoSuchKey"
    assert http_status(ei.value) == 404
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket_name("nobucket"), Key="k")
    assert error_code(ei.value) == "NoSuchBucket"
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=bucket_name("nobucket"), Key="k", Body=b"x")
    assert error_code(ei.value) == "NoSuchBucket"
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="missing")
    assert http_status(ei.value) == 404


@pytest.mark.moto_gap
def test_request_id_on_every_response(server, s3, bucket):
    seen = []
    responses = [
        s3.put_object(Bucket=bucket, Key="rid", Body=b"r"),
        s3.get_object(Bucket=bucket, Key="rid"),
        s3.head_object(Bucket=bucket, Key="rid"),
        s3.list_objects_v2(Bucket=bucket),
        s3.list_buckets(),
        s3.head_bucket(Bucket=bucket),
        s3.delete_object(Bucket=bucket, Key="rid"),
    ]
    for call in (lambda: s3.get_object(Bucket=bucket, Key="missing"),
                 lambda: s3.head_object(Bucket=bucket, Key="missing"),
                 lambda: s3.get_object(Bucket=bucket, Key="rid",
                                       Range="bytes=5-6"),
                 lambda: s3.delete_bucket(Bucket="no-such-bucket-rid-x")):
        with pytest.raises(ClientError) as ei:
            call()
        responses.append(ei.value.response)
    for r in responses:
        rid = resp_headers(r).get("x-amz-request-id")
        assert rid, r["ResponseMetadata"]
        seen.append(rid)
    assert len(set(seen)) == len(seen), "request ids are unique"
    # raw: unsigned and malformed requests also carry one
    for method, path in (("GET", f"/{bucket}/x"), ("GET", "/")):
        _, headers, _ = raw_request(server, method, path, sign_it=False)
        assert headers.get("x-amz-request-id")


# ------------------------------------------------------------ auth

@pytest.mark.moto_gap
def test_wrong_secret_is_signature_does_not_match(server, bucket):
    bad = make_client(server, secret_key="not-the-secret-key-0123456789")
    for call in (lambda: bad.list_buckets(),
                 lambda: bad.put_object(Bucket=bucket, Key="x", Body=b"x"),
                 lambda: bad.list_objects_v2(Bucket=bucket)):
        with pytest.raises(ClientError) as ei:
            call()
        assert error_code(ei.value) == "SignatureDoesNotMatch"
        assert http_status(ei.value) == 403


@pytest.mark.moto_gap
def test_unknown_access_key_is_invalid_access_key_id(server, bucket):
    bad = make_client(server, access_key="AKIDNOSUCHKEY0000000")
    with pytest.raises(ClientError) as ei:
        bad.list_buckets()
    assert error_code(ei.value) == "InvalidAccessKeyId"
    assert http_status(ei.value) == 403
    with pytest.raises(ClientError) as ei:
        bad.get_object(Bucket=bucket, Key="x")
    assert error_code(ei.value) == "InvalidAccessKeyId"


@pytest.mark.moto_gap
def test_anonymous_requests_are_denied(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret data")
    anon = make_client(server, signature_version=UNSIGNED)
    for call in (lambda: anon.get_object(Bucket=bucket, Key="private"),
                 lambda: anon.list_objects_v2(Bucket=bucket),
                 lambda: anon.put_object(Bucket=bucket, Key="anon",
                                         Body=b"x"),
                 lambda: anon.list_buckets()):
        with pytest.raises(ClientError) as ei:
            call()
        assert error_code(ei.value) == "AccessDenied"
        assert http_status(ei.value) == 403
    # plain HTTP client, no auth at all
    r = requests.get(f"{server.endpoint}/{bucket}/private", timeout=10)
    assert r.status_code == 403
    assert parse_error(r.content)["Code"] == "AccessDenied"
    assert b"secret data" not in r.content
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="anon")
    assert http_status(ei.value) == 404


@pytest.mark.moto_gap
def test_request_time_too_skewed(server, bucket):
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=30)
    signed = sign("GET", f"/{bucket}", [("list-type", "2")],
                  {"Host": server.hostport}, EMPTY_SHA256,
                  server.access_key, server.secret_key, now=old)
    r = requests.get(f"{server.endpoint}/{bucket}?list-type=2",
                     headers=signed.headers, timeout=10)
    assert r.status_code == 403
    assert parse_error(r.content)["Code"] == "RequestTimeTooSkewed"


# ------------------------------------------------------- malformed XML

def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.mark.moto_gap
@pytest.mark.parametrize("body", [
    b"<Delete><Object><Key>a</Key></Objec",
    b"this is not xml at all",
    b"<?xml version='1.0'?><Delete><Object><Key>a</Key></Object>",
])
def test_delete_objects_malformed_xml(server, s3, bucket, body):
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    status, headers, resp = raw_request(
        server, "POST", f"/{bucket}", [("delete", "")],
        headers={"Content-MD5": md5_b64(body),
                 "Content-Type": "application/xml"}, body=body)
    assert status == 400, resp
    assert parse_error(resp)["Code"] == "MalformedXML"
    assert headers.get("x-amz-request-id")
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"a"


@pytest.mark.moto_gap
@pytest.mark.parametrize("body", [
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",
    b"\x00\x01garbage\xff",
])
def test_complete_multipart_malformed_xml(server, s3, bucket, body):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="m", UploadId=uid, PartNumber=1,
                   Body=b"part")
    status, _, resp = raw_request(
        server, "POST", f"/{bucket}/m", [("uploadId", uid)],
        headers={"Content-Type": "application/xml"}, body=body)
    assert status == 400, resp
    assert parse_error(resp)["Code"] == "MalformedXML"
    # the upload is still usable
    parts = s3.list_parts(Bucket=bucket, Key="m", UploadId=uid)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1]


# ------------------------------------------------------- raw sockets

def host_port(server):
    h, p = server.hostport.rsplit(":", 1)
    return h, int(p)


def send_raw(server, data, half_close=True, timeout=10):
    """Send bytes on a fresh connection; return whatever comes back before
    the server closes (b'' on reset/close)."""
    s = socket.create_connection(host_port(server), timeout=timeout)
    got = b""
    try:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        raise AssertionError(
            f"server neither answered nor closed within {timeout}s; "
            f"got {got[:200]!r}")
    finally:
        s.close()
    return got


def assert_server_alive(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="alive", Body=b"still here")
    assert s3.get_object(Bucket=bucket, Key="alive")["Body"].read() == \
        b"still here"


GAP = pytest.mark.moto_gap


@pytest.mark.parametrize("garbage", [
    pytest.param(os.urandom(4096), id="random", marks=GAP),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
                 + os.urandom(500), id="tls-hello", marks=GAP),
    pytest.param(b"NOTAMETHOD / HTTP/1.1\r\nHost: x\r\n\r\n",
                 id="bad-method"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: banana"
                 b"\r\n\r\n", id="bad-length", marks=GAP),
    pytest.param(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                 id="huge-uri"),
    pytest.param(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: -5"
                 b"\r\n\r\n", id="negative-length", marks=GAP),
    pytest.param(b"\r\n\r\n\r\n\r\n", id="blank-lines"),
])
def test_garbage_request_gets_400_or_close(server, s3, bucket, garbage):
    got = send_raw(server, garbage)
    if got:
        status_line = got.split(b"\r\n", 1)[0]
        assert status_line.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")), got[:200]
        code = int(status_line.split()[1])
        assert code in (400, 403, 405, 411, 413, 414, 431, 501), status_line
    assert_server_alive(server, s3, bucket)


def test_truncated_put_leaves_no_object(server, s3, bucket):
    key = "truncated"
    signed = sign("PUT", f"/{bucket}/{key}", [],
                  {"Host": server.hostport, "Content-Length": "100000"},
                  UNSIGNED_PAYLOAD, server.access_key, server.secret_key)
    head = f"PUT /{bucket}/{key} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in signed.headers.items()) + "\r\n"
    s = socket.create_connection(host_port(server), timeout=10)
    s.sendall(head.encode() + b"x" * 50000)
    time.sleep(0.3)
    s.close()
    time.sleep(1.0)
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key=key)
    assert http_status(ei.value) == 404
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert_server_alive(server, s3, bucket)


def test_truncated_put_does_not_clobber_existing(server, s3, bucket):
    key = "existing"
    s3.put_object(Bucket=bucket, Key=key, Body=b"original contents")
    signed = sign("PUT", f"/{bucket}/{key}", [],
                  {"Host": server.hostport, "Content-Length": "5000"},
                  UNSIGNED_PAYLOAD, server.access_key, server.secret_key)
    head = f"PUT /{bucket}/{key} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in signed.headers.items()) + "\r\n"
    s = socket.create_connection(host_port(server), timeout=10)
    s.sendall(head.encode() + b"y" * 10)
    time.sleep(0.3)
    s.close()
    time.sleep(1.0)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == \
        b"original contents"


def chunked_put(server, bucket, key, data, corrupt_chunk=None,
                chunk_size=64 * 1024):
    headers = {"Host": server.hostport,
               "Content-Encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(data)),
               "Content-Length": str(aws_chunked_length(len(data),
                                                       chunk_size))}
    signed = sign("PUT", f"/{bucket}/{key}", [], headers, STREAMING,
                  server.access_key, server.secret_key)
    body = aws_chunked_body(signed, data, chunk_size, corrupt_chunk)
    assert len(body) == int(headers["Content-Length"])
    r = requests.put(f"{server.endpoint}/{bucket}/{key}", data=body,
                     headers=signed.headers, timeout=60)
    return r


@pytest.mark.parametrize("size", [0, 1000, 200_000])
def test_aws_chunked_signed_upload_valid(server, s3, bucket, size):
    data = payload(size, seed=f"chunked{size}")
    r = chunked_put(server, bucket, f"chunked-{size}", data)
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == f'"{md5_hex(data)}"'
    got = s3.get_object(Bucket=bucket, Key=f"chunked-{size}")
    assert got["Body"].read() == data
    assert got.get("ContentEncoding") in (None, "")


@pytest.mark.moto_gap
@pytest.mark.parametrize("corrupt", [0, 2, 3], ids=["first", "middle",
                                                   "final-empty"])
def test_aws_chunked_bad_chunk_signature(server, s3, bucket, corrupt):
    data = payload(200_000, seed="badchunk")   # chunks: 64K,64K,64K,8K,0
    r = chunked_put(server, bucket, "badchunk", data, corrupt_chunk=corrupt)
    assert r.status_code == 403, r.text
    assert parse_error(r.content)["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="badchunk")
    assert http_status(ei.value) == 404


def unsigned_trailer_put(server, bucket, key, data, trailer_value):
    chunks = [data[i:i + 8192] for i in range(0, len(data), 8192)]
    body = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks)
    body += b"0\r\n" + f"x-amz-checksum-crc32:{trailer_value}\r\n\r\n".encode()
    headers = {"Host": server.hostport,
               "Content-Encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(data)),
               "x-amz-trailer": "x-amz-checksum-crc32",
               "x-amz-sdk-checksum-algorithm": "CRC32",
               "Content-Length": str(len(body))}
    signed = sign("PUT", f"/{bucket}/{key}", [], headers,
                  "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                  server.access_key, server.secret_key)
    return requests.put(f"{server.endpoint}/{bucket}/{key}", data=body,
                        headers=signed.headers, timeout=60)


def test_unsigned_trailer_upload_valid(server, s3, bucket):
    data = payload(30_000, seed="trl")
    r = unsigned_trailer_put(server, bucket, "trl", data, crc32_b64(data))
    assert r.status_code == 200, r.text
    got = s3.get_object(Bucket=bucket, Key="trl", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32"] == crc32_b64(data)


@pytest.mark.moto_gap
def test_unsigned_trailer_wrong_checksum_is_bad_digest(server, s3, bucket):
    data = payload(30_000, seed="trl-bad")
    r = unsigned_trailer_put(server, bucket, "trl-bad", data,
                             crc32_b64(b"different"))
    assert r.status_code == 400, r.text
    assert parse_error(r.content)["Code"] == "BadDigest"
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="trl-bad")
    assert http_status(ei.value) == 404


@pytest.mark.moto_gap
def test_payload_sha256_mismatch(server, s3, bucket):
    body = b"the real body"
    signed = sign("PUT", f"/{bucket}/sha", [], {"Host": server.hostport},
                  hashlib.sha256(b"another body").hexdigest(),
                  server.access_key, server.secret_key)
    r = requests.put(f"{server.endpoint}/{bucket}/sha", data=body,
                     headers=signed.headers, timeout=30)
    assert r.status_code == 400, r.text
    assert parse_error(r.content)["Code"] == "XAmzContentSHA256Mismatch"
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="sha")
    assert http_status(ei.value) == 404
