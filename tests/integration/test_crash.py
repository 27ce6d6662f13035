"""kill -9 during concurrent uploads: acknowledged writes survive, nothing
partial or invented is ever served."""
import hashlib
import os
import random
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from cloudtest import MiB, make_client, new_credentials, payload

pytestmark = pytest.mark.needs_binary

ROUNDS = int(os.environ.get("CLOUD_CRASH_ROUNDS", "3"))
SEED = int(os.environ.get("CLOUD_TEST_SEED", str(random.randrange(1 << 30))))
SIZES = [100 * 1024, 3 * MiB, "mp12"]          # mp12: 12 MiB multipart
OVERWRITE_KEY = "hot/overwritten"


def content(key, version, size):
    return payload(size, seed=f"{key}#{version}")


def digest(data):
    return hashlib.sha256(data).hexdigest()


class Ledger:
    """What was attempted and what was acknowledged, per key."""

    def __init__(self):
        self.lock = threading.Lock()
        self.attempted = {}     # key -> {sha256: size}
        self.acked = {}         # key -> sha256 of the last acknowledged write
        self.acked_order = []   # (key, sha) in acknowledgement order

    def attempt(self, key, data):
        with self.lock:
            self.attempted.setdefault(key, {})[digest(data)] = len(data)

    def ack(self, key, data):
        with self.lock:
            self.acked[key] = digest(data)
            self.acked_order.append((key, digest(data)))


def upload(s3, bucket, key, data, multipart):
    if not multipart:
        s3.put_object(Bucket=bucket, Key=key, Body=data)
        return
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for n, off in enumerate(range(0, len(data), 5 * MiB), 1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid,
                           PartNumber=n, Body=data[off:off + 5 * MiB])
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid,
                                 MultipartUpload={"Parts": parts})


def writer(srv, bucket, ledger, stop, worker, rnd):
    s3 = make_client(srv, connect_timeout=3, read_timeout=30)
    i = 0
    while not stop.is_set():
        spec = rnd.choice(SIZES)
        multipart = spec == "mp12"
        size = 12 * MiB if multipart else spec
        key = f"w{worker}/{uuid.uuid4().hex[:8]}-{i}"
        data = content(key, 0, size)
        ledger.attempt(key, data)
        try:
            upload(s3, bucket, key, data, multipart)
        except Exception:
            return
        ledger.ack(key, data)
        i += 1


def overwriter(srv, bucket, ledger, stop, start_version):
    s3 = make_client(srv, connect_timeout=3, read_timeout=30)
    v = start_version[0]
    while not stop.is_set():
        v += 1
        start_version[0] = v
        data = content(OVERWRITE_KEY, v, 200 * 1024 + v)
        ledger.attempt(OVERWRITE_KEY, data)
        try:
            s3.put_object(Bucket=bucket, Key=OVERWRITE_KEY, Body=data)
        except Exception:
            return
        ledger.ack(OVERWRITE_KEY, data)


def verify(srv, bucket, ledger, in_flight_overwrite):
    s3 = make_client(srv, read_timeout=120)
    problems = []

    def get(key):
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as e:
            if e.response["Error"]["Code"] == "NoSuchKey":
                return None
            raise

    for key, versions in ledger.attempted.items():
        try:
            data = get(key)
        except ClientError as e:
            problems.append(f"{key}: GET failed with {e}")
            continue
        acked = ledger.acked.get(key)
        if key == OVERWRITE_KEY:
            allowed = {acked} if acked else {None}
            allowed |= in_flight_overwrite
        elif acked:
            allowed = {acked}
        else:
            allowed = {None} | set(versions)
        got = None if data is None else digest(data)
        if got not in allowed:
            what = "missing" if got is None else (
                "bytes never written" if got not in versions else
                "an older version")
            problems.append(f"{key}: {what} (size "
                            f"{None if data is None else len(data)}; "
                            f"acknowledged={bool(acked)})")

    # listing agrees with HEAD, and lists every acknowledged key
    listed = {}
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket):
            for o in page.get("Contents", []):
                listed[o["Key"]] = o
    except ClientError as e:
        problems.append(f"listing failed: {e}")
    for key, o in listed.items():
        if key not in ledger.attempted:
            problems.append(f"listed key {key!r} was never written")
            continue
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            problems.append(f"listed key {key} fails HEAD: {e}")
            continue
        if head["ContentLength"] != o["Size"] or head["ETag"] != o["ETag"]:
            problems.append(
                f"{key}: list says {o['Size']}/{o['ETag']}, HEAD says "
                f"{head['ContentLength']}/{head['ETag']}")
    for key in ledger.acked:
        if key not in listed:
            problems.append(f"acknowledged key {key} missing from listing")
    return problems


@pytest.mark.deadline(900)
def test_kill_9_during_uploads(fresh_server_factory):
    rnd = random.Random(SEED)
    print(f"crash test seed: {SEED} (set CLOUD_TEST_SEED to reproduce)")
    ak, sk = new_credentials()
    srv = fresh_server_factory(access_key=ak, secret_key=sk, name="crash")
    srv.start()
    bucket = f"crash-{uuid.uuid4().hex[:12]}"
    make_client(srv).create_bucket(Bucket=bucket)
    ledger = Ledger()
    version = [0]
    total_acked_before_kill = 0

    for rnd_no in range(ROUNDS):
        stop = threading.Event()
        v_before = version[0]
        threads = [threading.Thread(
            target=writer, args=(srv, bucket, ledger, stop, w,
                                 random.Random(rnd.random())), daemon=True)
            for w in range(4)]
        threads.append(threading.Thread(
            target=overwriter, args=(srv, bucket, ledger, stop, version),
            daemon=True))
        for t in threads:
            t.start()
        time.sleep(rnd.uniform(0.5, 4.0))
        srv.kill()
        stop.set()
        for t in threads:
            t.join(60)
            assert not t.is_alive(), "client thread stuck after kill"
        total_acked_before_kill = len(ledger.acked)

        # the overwrite that may have been in flight at the kill
        in_flight = set()
        if version[0] > v_before:
            v = version[0]
            cand = digest(content(OVERWRITE_KEY, v, 200 * 1024 + v))
            if ledger.acked.get(OVERWRITE_KEY) != cand:
                in_flight.add(cand)

        srv.start()
        problems = verify(srv, bucket, ledger, in_flight)
        assert not problems, (
            f"round {rnd_no} (seed {SEED}): " + "\n".join(problems[:30]))
        # the accepted state of the overwritten key becomes the new baseline
        s3 = make_client(srv)
        try:
            cur = digest(s3.get_object(Bucket=bucket, Key=OVERWRITE_KEY)
                         ["Body"].read())
            with ledger.lock:
                ledger.acked[OVERWRITE_KEY] = cur
        except ClientError:
            pass

    assert total_acked_before_kill > 0, "no upload was ever acknowledged"
    assert srv.stop() == 0
