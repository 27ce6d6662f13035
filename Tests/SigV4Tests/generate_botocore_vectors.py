#!/usr/bin/env python3
"""Prints SigV4 test vectors produced by botocore (run once by hand; the Swift tests do not run Python).

Every request is built by a real boto3 S3 client and captured on the wire in the `before-send` event, so
no network is used. The clock is frozen at 2013-05-24T00:00:00Z. Output is Swift source for the tables
in BotocoreVectors.swift.

Both botocore signers are exercised: the pure-Python one (BOTO_DISABLE_CRT=true) and the awscrt one that
botocore picks when awscrt is installed; the script re-runs itself once per signer.

Usage: python3 Tests/SigV4Tests/generate_botocore_vectors.py > /tmp/vectors.swift
"""
import datetime
import io
import os
import subprocess
import sys
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
    headers = [] if "host" in {k.lower() for k in request.headers.keys()} else [("host", parts.netloc)]
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
        config=Config(signature_version="s3v4", s3={"addressing_style": addressing}, retries={"max_attempts": 1}, **config),
    )
    c.meta.events.register("before-send", capture)
    return c


def run(name, call):
    captured.clear()
    try:
        call()
    except Exception:
        pass  # the fake response may not parse; the request was captured
    if not captured:
        return None  # botocore refused to build it with this signer (e.g. CRC32C needs awscrt)
    return (name,) + captured[0]


def frozen_now(remove_tzinfo=True):
    return NOW.replace(tzinfo=None) if remove_tzinfo else NOW


def independent_signed_trailer_vector():
    """A STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER body computed with hashlib/hmac only (AWS docs formulas)."""
    import base64, hashlib, hmac, zlib
    def h(key, msg):
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()
    date, stamp, scope = "20130524", "20130524T000000Z", "20130524/us-east-1/s3/aws4_request"
    key = h(h(h(h(("AWS4" + SECRET).encode(), date), "us-east-1"), "s3"), "aws4_request")
    seed = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"  # any seed works for the chain
    empty = hashlib.sha256(b"").hexdigest()
    payload = b"a" * 70000
    previous, body = seed, b""
    for chunk in (payload[:65536], payload[65536:], b""):
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", stamp, scope, previous, empty, hashlib.sha256(chunk).hexdigest()])
        previous = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        body += b"%x;chunk-signature=%s\r\n" % (len(chunk), previous.encode())
        if chunk:
            body += chunk + b"\r\n"
    crc = base64.b64encode((zlib.crc32(payload) & 0xffffffff).to_bytes(4, "big")).decode()
    canonical = "x-amz-checksum-crc32:" + crc + "\n"
    to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", stamp, scope, previous, hashlib.sha256(canonical.encode()).hexdigest()])
    trailer_signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    body += ("x-amz-checksum-crc32:%s\r\nx-amz-trailer-signature:%s\r\n\r\n" % (crc, trailer_signature)).encode()
    print("/// Signed chunks + signed trailer, computed with Python hashlib/hmac only (seed %s)." % seed)
    print("let independentSignedTrailerVector = (")
    print("    seed: %s, signingKeyHex: %s, crc32: %s, trailerSignature: %s," % (
        swift_string(seed), swift_string(key.hex()), swift_string(crc), swift_string(trailer_signature)))
    print("    bodySHA256: %s, bodyLength: %d)" % (swift_string(hashlib.sha256(body).hexdigest()), len(body)))


if len(sys.argv) == 1:
    print("// Generated by generate_botocore_vectors.py with botocore %s; do not edit by hand." % botocore.__version__)
    independent_signed_trailer_vector()
    for signer, disable in (("py", "true"), ("crt", "false")):
        env = dict(os.environ, BOTO_DISABLE_CRT=disable)
        sys.stdout.write(subprocess.run(
            [sys.executable, __file__, signer], env=env, check=True, capture_output=True, text=True).stdout)
    sys.exit(0)

SIGNER = sys.argv[1]
patches = [mock.patch.object(botocore.auth, "get_current_datetime", side_effect=frozen_now)]
if SIGNER == "crt":
    import botocore.crt.auth
    patches.append(mock.patch.object(botocore.crt.auth, "get_current_datetime", side_effect=frozen_now))
for patch in patches:
    patch.start()
if True:
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
            Bucket="examplebucket", Key="stream.bin", Body=io.BytesIO(b"hello aws-chunked world\n" * 700))),
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

print("let %sHeaderVectors: [WireVector] = [" % SIGNER)
for name, method, path_, query, headers, body in filter(None, header_cases):
    print("    WireVector(")
    print("        name: %s, method: %s, path: %s, query: %s," % (
        swift_string(name), swift_string(method), swift_string(path_), swift_string(query)))
    print("        headers: [")
    for n, v in headers:
        print("            (%s, %s)," % (swift_string(n), swift_string(v)))
    print("        ]),")
print("]")
print()
print("let %sPresignedVectors: [WireVector] = [" % SIGNER)
for name, url in presigned_cases:
    parts = urlsplit(url)
    print("    WireVector(")
    print("        name: %s, method: %s, path: %s, query: %s," % (
        swift_string(name), swift_string("PUT" if "put" in name else "GET"), swift_string(parts.path),
        swift_string(parts.query)))
    print("        headers: [(%s, %s)]), " % (swift_string("host"), swift_string(parts.netloc)))
print("]")
print()
print("let %sStreamingVectors: [StreamingVector] = [" % SIGNER)
for name, method, path_, query, headers, body in filter(None, streaming_cases):
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
