#!/usr/bin/env python3
"""Prints SigV4 test vectors produced by botocore (run once by hand; the Swift tests do not run Python).

Every request is built by a real boto3 S3 client and captured on the wire in the `before-send` event, so
no network is used. The clock is frozen at 2013-05-24T00:00:00Z. Output is Swift source for the tables
in BotocoreVectors.swift.

Usage: python3 Tests/SigV4Tests/generate_botocore_vectors.py > /tmp/vectors.swift
"""
import datetime
import io
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore
import botocore.auth
from botocore.awsrequest import AWSResponse
from botocore.config import Config

NOW = datetime.datetime(2013, 5, 24, 0, 0, 0, tzinfo=datetime.timezone.utc)
ACCESS = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def swift_string(text):
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\n":
            out.append("\\n")
        elif 0x20 <= ord(ch) < 0x7F:
            out.append(ch)
        else:
            out.append("\\u{%x}" % ord(ch))
    return '"' + "".join(out) + '"'


captured = []


def capture(request, **kwargs):
    parts = urlsplit(request.url)
    headers = [("host", parts.netloc)]
    for name, value in request.headers.items():
        if isinstance(value, bytes):
            value = value.decode()
        headers.append((name, value))
    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, str):
        body = body.encode()
    captured.append((request.method, parts.path, parts.query, headers, body or b""))
    response = AWSResponse(request.url, 200, {}, None)
    response._content = b"<?xml version=\"1.0\"?><R/>"
    return response


def client(addressing="path", token=None, **config):
    c = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="https://s3.example.com",
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        aws_session_token=token,
        config=Config(s3={"addressing_style": addressing}, retries={"max_attempts": 1}, **config),
    )
    c.meta.events.register("before-send", capture)
    return c


def run(name, call):
    captured.clear()
    try:
        call()
    except Exception:
        pass  # the fake response may not parse; the request was captured
    return (name,) + captured[0]


with mock.patch.object(botocore.auth, "get_current_datetime", return_value=NOW.replace(tzinfo=None)):
    path = client()
    virtual = client("virtual")
    temporary = client(token="FQoGZXIvYXdzEXAMPLETOKEN/+=")
    header_cases = [
        run("get-object-range", lambda: path.get_object(Bucket="examplebucket", Key="test.txt", Range="bytes=0-9")),
        run("get-object-odd-key", lambda: path.get_object(Bucket="examplebucket", Key="photos/2024 summer/\u00fc+&=?#%~*'!.jpg")),
        run("get-object-virtual-host", lambda: virtual.get_object(Bucket="examplebucket", Key="a//b/../c.txt")),
        run("put-object-bytes", lambda: path.put_object(
            Bucket="examplebucket", Key="notes/hello.txt", Body=b"Welcome to Amazon S3.",
            ContentType="text/plain", Metadata={"Color": "  blue   green "}, StorageClass="REDUCED_REDUNDANCY")),
        run("list-objects-v2", lambda: path.list_objects_v2(
            Bucket="examplebucket", Prefix="a b/\u00fc", Delimiter="/", MaxKeys=2, StartAfter="x~y*z+1")),
        run("get-bucket-lifecycle", lambda: path.get_bucket_lifecycle_configuration(Bucket="examplebucket")),
        run("delete-objects", lambda: path.delete_objects(
            Bucket="examplebucket", Delete={"Objects": [{"Key": "a"}, {"Key": "b c"}]})),
        run("upload-part", lambda: path.upload_part(
            Bucket="examplebucket", Key="big/file.bin", PartNumber=3, UploadId="VXBsb2FkIElE+/=", Body=b"x" * 100)),
        run("copy-object", lambda: path.copy_object(
            Bucket="examplebucket", Key="dst key", CopySource={"Bucket": "src", "Key": "s\u00fcr ce/k+y"})),
        run("head-object-session-token", lambda: temporary.head_object(Bucket="examplebucket", Key="t.txt")),
    ]
    streaming_cases = [
        run("put-object-stream-crc32", lambda: path.put_object(
            Bucket="examplebucket", Key="stream.bin", Body=io.BytesIO(b"hello aws-chunked world\n" * 3000))),
        run("put-object-stream-empty", lambda: path.put_object(
            Bucket="examplebucket", Key="empty.bin", Body=io.BytesIO(b""))),
        run("put-object-stream-crc32c", lambda: path.put_object(
            Bucket="examplebucket", Key="c.bin", Body=io.BytesIO(bytes(range(256)) * 7), ChecksumAlgorithm="CRC32C")),
    ]
    presigned_cases = [
        ("presign-get", path.generate_presigned_url(
            "get_object", Params={"Bucket": "examplebucket", "Key": "test.txt"}, ExpiresIn=86400)),
        ("presign-get-response-params", path.generate_presigned_url(
            "get_object", Params={"Bucket": "examplebucket", "Key": "dir/\u00fc b.txt",
                                  "ResponseContentDisposition": "attachment; filename=\"a b.txt\""}, ExpiresIn=600)),
        ("presign-put-virtual", virtual.generate_presigned_url(
            "put_object", Params={"Bucket": "examplebucket", "Key": "up/load.bin"}, ExpiresIn=3600)),
        ("presign-get-session-token", temporary.generate_presigned_url(
            "get_object", Params={"Bucket": "examplebucket", "Key": "t.txt"}, ExpiresIn=60)),
    ]

print("// Generated by generate_botocore_vectors.py with botocore %s; do not edit by hand." % botocore.__version__)
print("let botocoreHeaderVectors: [WireVector] = [")
for name, method, path_, query, headers, body in header_cases:
    print("    WireVector(")
    print("        name: %s, method: %s, path: %s, query: %s," % (
        swift_string(name), swift_string(method), swift_string(path_), swift_string(query)))
    print("        headers: [")
    for n, v in headers:
        print("            (%s, %s)," % (swift_string(n), swift_string(v)))
    print("        ]),")
print("]")
print()
print("let botocorePresignedVectors: [WireVector] = [")
for name, url in presigned_cases:
    parts = urlsplit(url)
    print("    WireVector(")
    print("        name: %s, method: %s, path: %s, query: %s," % (
        swift_string(name), swift_string("PUT" if "put" in name else "GET"), swift_string(parts.path),
        swift_string(parts.query)))
    print("        headers: [(%s, %s)]), " % (swift_string("host"), swift_string(parts.netloc)))
print("]")
print()
print("let botocoreStreamingVectors: [StreamingVector] = [")
for name, method, path_, query, headers, body in streaming_cases:
    print("    StreamingVector(")
    print("        wire: WireVector(")
    print("            name: %s, method: %s, path: %s, query: %s," % (
        swift_string(name), swift_string(method), swift_string(path_), swift_string(query)))
    print("            headers: [")
    for n, v in headers:
        print("                (%s, %s)," % (swift_string(n), swift_string(v)))
    print("            ]),")
    print("        bodyBase64: %s)," % swift_string(__import__("base64").b64encode(body).decode()))
print("]")
