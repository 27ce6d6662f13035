"""`cloud storage cp` of large files: parts sent and fetched in parallel (the bytes checked end to
end), and an upload killed with SIGKILL half-way resumed by running the same command again, keeping
the parts already sent."""
import hashlib
import os
import signal
import subprocess
import time
import uuid

import pytest

from cloudtest import CLOUD_BIN

pytestmark = pytest.mark.needs_binary


@pytest.fixture
def env(server, tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUD_", "AWS_"))}
    environment.update(CLOUD_CONFIG=str(tmp_path / "config" / "cloud"), CLOUD_S3_ENDPOINT=server.endpoint,
                       CLOUD_S3_ACCESS_KEY=server.access_key, CLOUD_S3_SECRET_KEY=server.secret_key)
    return environment


def random_file(path, mib):
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cp(env, *args, check=True):
    r = subprocess.run([CLOUD_BIN, "storage", "cp", *args], env=env, capture_output=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r


def test_parallel_upload_and_download(s3, env, tmp_path):
    bucket = f"cp-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    source = tmp_path / "big.bin"
    digest = random_file(source, 70)  # five 16 MiB parts, the last one short
    cp(env, str(source), f"s3://{bucket}/big.bin", "--parallel", "4")
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == 70 << 20 and head["ETag"].strip('"').endswith("-5"), head["ETag"]
    cp(env, f"s3://{bucket}/big.bin", str(tmp_path / "back.bin"), "--parallel", "4")
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest
    streamed = subprocess.run([CLOUD_BIN, "storage", "cp", f"s3://{bucket}/big.bin", "-"], env=env, capture_output=True, timeout=300)
    assert streamed.returncode == 0 and hashlib.sha256(streamed.stdout).hexdigest() == digest
    bad = cp(env, str(source), f"s3://{bucket}/x", "--parallel", "17", check=False)
    assert bad.returncode != 0 and b"--parallel" in bad.stderr


def test_interrupted_upload_resumes(s3, env, tmp_path):
    bucket = f"cp-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    source = tmp_path / "huge.bin"
    digest = random_file(source, 400)  # 25 parts
    first = subprocess.Popen([CLOUD_BIN, "storage", "cp", str(source), f"s3://{bucket}/huge.bin", "--parallel", "1"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it once a few parts are in the store (their number is what the resume must keep).
    deadline = time.time() + 120
    sent = 0
    while sent < 3:
        assert first.poll() is None, "the upload finished before it could be interrupted"
        assert time.time() < deadline, "no parts arrived"
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        if uploads:
            sent = len(s3.list_parts(Bucket=bucket, Key="huge.bin", UploadId=uploads[0]["UploadId"]).get("Parts", []))
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert len(uploads) == 1
    kept = len(s3.list_parts(Bucket=bucket, Key="huge.bin", UploadId=uploads[0]["UploadId"])["Parts"])
    assert 3 <= kept < 25
    state = list((tmp_path / "config" / "uploads").glob("*.json"))
    assert len(state) == 1 and uploads[0]["UploadId"] in state[0].read_text()

    second = cp(env, str(source), f"s3://{bucket}/huge.bin")
    assert f"resuming the upload: {kept} of 25 parts are already there".encode() in second.stderr, second.stderr
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert not list((tmp_path / "config" / "uploads").glob("*.json")), "the finished upload is forgotten"
    body = s3.get_object(Bucket=bucket, Key="huge.bin")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == digest
