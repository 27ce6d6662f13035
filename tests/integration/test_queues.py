"""Queues: boto3's `sqs` client unmodified against the SQS endpoint of `cloud dev` (SQLite) and of
`cloud server` (PostgreSQL), the `cloud queues` CLI, and three `cloud server` processes on one
PostgreSQL whose receivers never get one message twice inside its visibility timeout."""
import json
import os
import subprocess
import threading
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cloudtest import CLOUD_BIN
from controlhelpers import call, user
from controltest import ControlServer

pytestmark = pytest.mark.needs_binary


@pytest.fixture(scope="module")
def api(server, deployment):
    if server.external:
        pytest.skip("needs cloud dev's control plane")
    return deployment.url


def sqs_client(api, key, secret):
    return boto3.client("sqs", endpoint_url=f"{api}/sqs", region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}, read_timeout=40))


def tenant_sqs(api, prefix="q"):
    """A new user's tenant: its API key, a storage key and an sqs client signed with it."""
    _, api_key = user(api, prefix)
    r = call(api, "POST", "/storage/keys", api_key, {"name": "sqs"})
    assert r.status_code == 201, r.text
    k = r.json()
    return api_key, k, sqs_client(api, k["access_key_id"], k["secret_access_key"])


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_boto3_standard_queue_with_dead_letters(api):
    _, _, sqs = tenant_sqs(api)
    dlq = sqs.create_queue(QueueName="dead")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 2})
    url = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "30", "RedrivePolicy": policy})["QueueUrl"]
    # CreateQueue with the same attributes again answers the same URL; other attributes are an error.
    assert sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "30", "RedrivePolicy": policy})["QueueUrl"] == url
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "31"})
    assert error_code(e) == "QueueAlreadyExists"
    assert sqs.get_queue_url(QueueName="jobs")["QueueUrl"] == url
    assert sorted(sqs.list_queues()["QueueUrls"]) == sorted([dlq, url])
    assert sqs.list_queues(QueueNamePrefix="jo")["QueueUrls"] == [url]

    # boto3 checks MD5OfMessageBody and MD5OfMessageAttributes of both answers itself.
    attributes = {"kind": {"DataType": "String", "StringValue": "résumé"}, "n": {"DataType": "Number", "StringValue": "42"},
                  "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xffbytes"}}
    sent = sqs.send_message(QueueUrl=url, MessageBody="héllo wörld", MessageAttributes=attributes)
    got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], AttributeNames=["All"], WaitTimeSeconds=1)["Messages"]
    assert [m["MessageId"] for m in got] == [sent["MessageId"]]
    message = got[0]
    assert message["Body"] == "héllo wörld" and message["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\xffbytes"
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == [], "in flight: hidden"
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == "0" and counts["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert json.loads(counts["RedrivePolicy"]) == {"deadLetterTargetArn": arn, "maxReceiveCount": 2}
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [url]

    # Visible again at once: received a second time with a new receipt handle; the old one is stale.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    second = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
    assert second["ReceiptHandle"] != message["ReceiptHandle"] and second["Attributes"]["ApproximateReceiveCount"] == "2"
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=0)
    # Received maxReceiveCount (2) times: the next receive moves it to the dead-letter queue.
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    dead = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["kind"], WaitTimeSeconds=1)["Messages"]
    assert [m["MessageId"] for m in dead] == [sent["MessageId"]] and list(dead[0]["MessageAttributes"]) == ["kind"]
    sqs.delete_message(QueueUrl=dlq, ReceiptHandle=dead[0]["ReceiptHandle"])
    assert sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages",
                                                                   "ApproximateNumberOfMessagesNotVisible"])["Attributes"] == {
        "ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}

    # Batches answer per entry.
    result = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "one"}, {"Id": "b", "MessageBody": "two", "DelaySeconds": 900},
        {"Id": "c", "MessageBody": "three", "DelaySeconds": 901}])
    assert sorted(s["Id"] for s in result["Successful"]) == ["a", "b"]
    assert [(f["Id"], f["SenderFault"]) for f in result["Failed"]] == [("c", True)]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["one"], "the delayed message is not receivable yet"
    changed = sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": "x", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 120},
        {"Id": "y", "ReceiptHandle": "not-a-handle", "VisibilityTimeout": 5}])
    assert [s["Id"] for s in changed["Successful"]] == ["x"] and [f["Code"] for f in changed["Failed"]] == ["ReceiptHandleIsInvalid"]
    deleted = sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": "x", "ReceiptHandle": got[0]["ReceiptHandle"]}])
    assert [s["Id"] for s in deleted["Successful"]] == ["x"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])["Attributes"] == {
        "ApproximateNumberOfMessagesDelayed": "1"}
    sqs.purge_queue(QueueUrl=url)
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])["Attributes"] == {
        "ApproximateNumberOfMessagesDelayed": "0"}
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "3", "RedrivePolicy": ""})
    shown = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert shown["DelaySeconds"] == "3" and "RedrivePolicy" not in shown
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url, MessageBody="x")


def test_boto3_fifo_groups_and_deduplication(api):
    _, _, sqs = tenant_sqs(api)
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName="orders", Attributes={"FifoQueue": "true"})
    assert error_code(e) == "InvalidParameterValue"
    url = sqs.create_queue(QueueName="orders.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    first = sqs.send_message(QueueUrl=url, MessageBody="a1", MessageGroupId="a")
    again = sqs.send_message(QueueUrl=url, MessageBody="a1", MessageGroupId="a")
    assert again["MessageId"] == first["MessageId"], "the same body within 5 minutes is a duplicate"
    for body, group in [("b1", "b"), ("a2", "a"), ("b2", "b")]:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=body + "-id")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, AttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in got] == ["a1", "b1"]
    assert got[0]["Attributes"]["MessageGroupId"] == "a" and int(got[0]["Attributes"]["SequenceNumber"]) < int(got[1]["Attributes"]["SequenceNumber"])
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == [], "both groups are in flight"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]] == ["a2"]
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="no group")
    assert error_code(e) == "MissingParameter"
    batch = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}", "MessageGroupId": "c"} for i in range(10)])
    assert len(batch["Successful"]) == 10
    assert len({s["SequenceNumber"] for s in batch["Successful"]}) == 10


def test_boto3_errors_and_authentication(api):
    _, key, sqs = tenant_sqs(api)
    url = sqs.create_queue(QueueName="private")["QueueUrl"]
    for kwargs, expected in [
        ({"MessageBody": "x" * (256 * 1024 + 1)}, "InvalidParameterValue"),
        ({"MessageBody": "bell \x07"}, "InvalidMessageContents"),
        ({"MessageBody": "x", "MessageAttributes": {"AWS.reserved": {"DataType": "String", "StringValue": "v"}}}, "InvalidParameterValue"),
    ]:
        with pytest.raises(ClientError) as e:
            sqs.send_message(QueueUrl=url, **kwargs)
        assert error_code(e) == expected, kwargs.keys()
    with pytest.raises(ClientError) as e:
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="garbage")
    assert error_code(e) == "ReceiptHandleIsInvalid"
    with pytest.raises(ClientError) as e:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "99999"})
    assert error_code(e) == "InvalidAttributeValue"

    # Signatures: a wrong secret, an unknown key; another tenant's key sees none of these queues.
    with pytest.raises(ClientError) as e:
        sqs_client(api, key["access_key_id"], "wrong" + key["secret_access_key"]).list_queues()
    assert error_code(e) == "SignatureDoesNotMatch" and e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as e:
        sqs_client(api, "AKNOSUCHKEY0000", "x" * 40).list_queues()
    assert error_code(e) == "InvalidClientTokenId"
    _, _, other = tenant_sqs(api, "other")
    assert other.list_queues().get("QueueUrls", []) == []
    with pytest.raises(other.exceptions.QueueDoesNotExist):
        other.send_message(QueueUrl=url, MessageBody="not yours")


def test_long_poll_answers_when_a_message_arrives(api):
    _, _, sqs = tenant_sqs(api)
    url = sqs.create_queue(QueueName="wait")["QueueUrl"]
    answer = {}

    def receive():
        answer["messages"] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20).get("Messages", [])
        answer["at"] = time.monotonic()

    def receive_timed():
        answer["asked"] = time.monotonic()
        receive()

    waiter = threading.Thread(target=receive_timed)
    waiter.start()
    # The scenario: a message arrives 2 seconds into a 20-second wait (the queue is empty until then).
    time.sleep(2)
    sent_at = time.monotonic()
    sqs.send_message(QueueUrl=url, MessageBody="now")
    waiter.join(30)
    assert not waiter.is_alive()
    assert answer["asked"] < sent_at, "the receive was asked before the message was sent"
    assert [m["Body"] for m in answer["messages"]] == ["now"]
    # Answered when the message came, not at the end of its 20 s wait.
    assert answer["at"] - sent_at < 10, answer["at"] - sent_at


def cli(args, env, check=True):
    r = subprocess.run([CLOUD_BIN] + args, env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r


def test_cli(api, tmp_path):
    _, key = user(api, "qcli")
    env = dict(os.environ, HOME=str(tmp_path), CLOUD_CONFIG=str(tmp_path / "config"), CLOUD_API_URL=api, CLOUD_API_KEY=key)
    cli(["queues", "create", "dead"], env)
    cli(["queue", "create", "jobs", "--visibility-timeout", "60", "--dead-letter-queue", "dead", "--max-receives", "3"], env)
    listed = json.loads(cli(["queues", "list", "-o", "json"], env).stdout)
    assert [(q["name"], q["dead_letter_queue"]) for q in listed["queues"]] == [("dead", None), ("jobs", "dead")]
    cli(["queues", "send", "jobs", "--body", "hello", "--attribute", "kind=greeting"], env)
    shown = json.loads(cli(["queues", "show", "jobs", "-o", "json"], env).stdout)
    assert shown["messages_visible"] == 1
    got = json.loads(cli(["queues", "receive", "jobs", "--max", "5", "-o", "json"], env).stdout)["messages"]
    assert [(m["body"], m["attributes"]) for m in got] == [("hello", {"kind": "greeting"})]
    cli(["queues", "delete-message", "jobs", got[0]["receipt_handle"]], env)
    stale = cli(["queues", "delete-message", "jobs", got[0]["receipt_handle"]], env, check=False)
    assert stale.returncode != 0 and "not_found" in stale.stderr
    cli(["queues", "create", "f.fifo", "--fifo", "--content-based-deduplication"], env)
    cli(["queues", "send", "f.fifo", "--body", "x", "--group", "g"], env)
    assert "duplicate" in cli(["queues", "send", "f.fifo", "--body", "x", "--group", "g"], env).stdout
    assert "x" in cli(["queues", "receive", "f.fifo", "--delete"], env).stdout
    assert json.loads(cli(["queues", "show", "f.fifo", "-o", "json"], env).stdout)["messages_in_flight"] == 0
    bad = cli(["queues", "update", "jobs", "--delay", "901"], env, check=False)
    assert bad.returncode != 0 and "DelaySeconds" in bad.stderr
    cli(["queues", "delete", "jobs"], env)
    gone = cli(["queues", "show", "jobs"], env, check=False)
    assert gone.returncode != 0 and "not_found" in gone.stderr


def test_three_processes_on_one_postgres_never_deliver_twice(postgres, tmp_path):
    """Three `cloud server` processes on one PostgreSQL database, four receivers on each, through the
    REST API: every one of 400 messages is received exactly once (the visibility timeout, 10
    minutes, outlasts the test), and none is lost."""
    database = postgres.new_database("queues")
    servers = [ControlServer(database, tmp_path / f"cp{i}", name=f"cp{i}") for i in range(3)]
    for s in servers:
        s.start()
    try:
        _, key = user(servers[0].url, "multi")
        assert call(servers[0].url, "POST", "/queues", key, {"name": "work", "visibility_timeout": 600}).status_code == 201
        for i in range(400):
            r = call(servers[i % 3].url, "POST", "/queues/work/messages", key, {"body": f"m{i}"})
            assert r.status_code == 201, r.text
        received = []
        lock = threading.Lock()
        failures = []

        def receiver(url):
            try:
                while True:
                    r = call(url, "POST", "/queues/work/messages/receive", key, {"max_messages": 10, "wait_seconds": 1})
                    assert r.status_code == 200, r.text
                    messages = r.json()["messages"]
                    if not messages:
                        return
                    with lock:
                        received.extend(m["body"] for m in messages)
            except Exception as e:  # recorded and failed below, never swallowed
                failures.append(repr(e))

        threads = [threading.Thread(target=receiver, args=(s.url,)) for s in servers for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failures, failures
        assert not any(t.is_alive() for t in threads)
        assert len(received) == 400, f"{len(received)} receives of 400 messages"
        assert sorted(received) == sorted(f"m{i}" for i in range(400))
    finally:
        for s in servers:
            s.stop()


def test_aws_cli(api, tmp_path):
    _, key, _ = tenant_sqs(api, "awscli")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=key["access_key_id"], AWS_SECRET_ACCESS_KEY=key["secret_access_key"],
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))

    def aws(*args):
        r = subprocess.run(["aws", "--endpoint-url", f"{api}/sqs", "sqs"] + list(args), env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else {}

    url = aws("create-queue", "--queue-name", "from-cli")["QueueUrl"]
    sent = aws("send-message", "--queue-url", url, "--message-body", "hi from aws-cli")
    got = aws("receive-message", "--queue-url", url, "--wait-time-seconds", "2")["Messages"]
    assert [(m["MessageId"], m["Body"]) for m in got] == [(sent["MessageId"], "hi from aws-cli")]
    aws("delete-message", "--queue-url", url, "--receipt-handle", got[0]["ReceiptHandle"])
    assert aws("get-queue-attributes", "--queue-url", url, "--attribute-names", "ApproximateNumberOfMessages")["Attributes"] == {
        "ApproximateNumberOfMessages": "0"}
