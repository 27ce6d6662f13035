"""The node's HTTP behaviour beyond S3 operations: Expect: 100-continue,
health and metrics endpoints, request ids, graceful shutdown."""
import socket
import time

import pytest
import requests

from cloudtest import UNSIGNED, new_credentials, payload, sign


def host_port(server):
    host, port = server.hostport.rsplit(":", 1)
    return host, int(port)


def read_response_head(sock, timeout=10):
    """Reads one response head (status line + headers) from a raw socket."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0] else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def test_expect_continue_refuses_a_bad_signature_before_the_body(server, s3, bucket):
    signed = sign("PUT", f"/{bucket}/refused", [],
                  {"Host": server.hostport, "Content-Length": "1048576",
                   "Expect": "100-continue"},
                  UNSIGNED, server.access_key, "not-the-secret")
    head = f"PUT /{bucket}/refused HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in signed.headers.items()) + "\r\n"
    with socket.create_connection(host_port(server), timeout=10) as sock:
        sock.sendall(head.encode())
        status, headers, _ = read_response_head(sock)
    # The final answer comes without a 100 Continue and without the body
    # ever being sent.
    assert status == 403
    assert headers.get("x-amz-request-id")
    with pytest.raises(Exception):
        s3.head_object(Bucket=bucket, Key="refused")


def test_expect_continue_accepts_a_good_signature(server, s3, bucket):
    body = payload(200_000, seed="continue")
    signed = sign("PUT", f"/{bucket}/accepted", [],
                  {"Host": server.hostport, "Content-Length": str(len(body)),
                   "Expect": "100-continue"},
                  UNSIGNED, server.access_key, server.secret_key)
    head = f"PUT /{bucket}/accepted HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in signed.headers.items()) + "\r\n"
    with socket.create_connection(host_port(server), timeout=10) as sock:
        sock.sendall(head.encode())
        status, _, _ = read_response_head(sock)
        assert status == 100
        sock.sendall(body)
        status, headers, _ = read_response_head(sock)
    assert status == 200
    assert s3.get_object(Bucket=bucket, Key="accepted")["Body"].read() == body


def test_health_endpoints(server):
    assert requests.get(f"{server.endpoint}/health/live", timeout=5).status_code == 200
    ready = requests.get(f"{server.endpoint}/health/ready", timeout=5)
    assert ready.status_code == 200


def test_metrics_count_requests_and_stored_bytes(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="metered", Body=b"x" * 1234)
    s3.get_object(Bucket=bucket, Key="metered")["Body"].read()
    text = requests.get(f"{server.endpoint}/metrics", timeout=5).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    assert samples['cloud_s3_requests_total{operation="PutObject",status="200"}'] >= 1
    assert samples['cloud_s3_requests_total{operation="GetObject",status="200"}'] >= 1
    assert samples['cloud_s3_request_duration_seconds_count{operation="PutObject"}'] >= 1
    assert samples["cloud_s3_received_bytes_total"] >= 1234
    assert samples["cloud_s3_sent_bytes_total"] >= 1234
    assert samples["cloud_storage_objects"] >= 1
    assert samples["cloud_storage_bytes"] >= 1234


def test_signed_request_to_health_path_is_s3(server, s3):
    # A bucket may be called "health": signed requests there are S3.
    try:
        s3.create_bucket(Bucket="health")
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.put_object(Bucket="health", Key="live", Body=b"an object")
    assert s3.get_object(Bucket="health", Key="live")["Body"].read() == b"an object"


@pytest.mark.needs_binary
def test_sigterm_stops_promptly_with_idle_keepalive_connections(fresh_server_factory):
    ak, sk = new_credentials()
    srv = fresh_server_factory(name="sigterm", access_key=ak, secret_key=sk)
    srv.start()
    session = requests.Session()
    assert session.get(f"{srv.endpoint}/health/live", timeout=5).status_code == 200
    # The session keeps its connection open and idle.
    started = time.monotonic()
    srv.stop(timeout=15)
    assert time.monotonic() - started < 10


def test_clients_vanishing_mid_body_leave_the_server_serving(server, s3, bucket):
    """Many uploads cut off at random points (as a load generator does when it
    stops) must neither crash the server nor leave objects behind."""
    import random
    import threading

    rng = random.Random(7)
    body = payload(1 << 20, seed="vanish")
    cuts = [rng.randrange(0, len(body)) for _ in range(24)]

    def cut_upload(index, cut):
        key = f"vanished-{index}"
        signed = sign("PUT", f"/{bucket}/{key}", [],
                      {"Host": server.hostport, "Content-Length": str(len(body))},
                      UNSIGNED, server.access_key, server.secret_key)
        head = f"PUT /{bucket}/{key} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in signed.headers.items()) + "\r\n"
        with socket.create_connection(host_port(server), timeout=10) as sock:
            sock.sendall(head.encode() + body[:cut])
            time.sleep(0.05)
            # An abortive close (RST), like a killed client.
            if index % 2: sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    threads = [threading.Thread(target=cut_upload, args=(i, c)) for i, c in enumerate(cuts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.5)
    assert requests.get(f"{server.endpoint}/health/live", timeout=5).status_code == 200
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in listed] == []


@pytest.mark.parametrize("size", [100_000, 1_000_000])
def test_huge_request_head_is_refused_cleanly(server, s3, bucket, size):
    with socket.create_connection(host_port(server), timeout=10) as sock:
        sock.sendall(b"GET /" + bucket.encode() + b"/k HTTP/1.1\r\nHost: x\r\nX-Big: "
                     + b"a" * size + b"\r\n\r\n")
        try:
            status, _, _ = read_response_head(sock)
        except ConnectionResetError:
            status = 0  # closed without an answer is acceptable too
    assert status in (400, 431, 0)
    assert requests.get(f"{server.endpoint}/health/live", timeout=5).status_code == 200


def test_unknown_version_id_is_refused_not_ignored(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="v", Body=b"current")
    # The only version of an object in an unversioned bucket is "null".
    assert s3.get_object(Bucket=bucket, Key="v", VersionId="null")["Body"].read() == b"current"
    with pytest.raises(Exception) as info:
        s3.get_object(Bucket=bucket, Key="v", VersionId="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
    assert "InvalidArgument" in str(info.value)
