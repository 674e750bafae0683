"""AWS errors become one line that says what to do, and an exit code (1: AWS, 2: input), never a
traceback. Some run in-process on Stubber errors; the rest run `python -m deploy` as a child
process against real HTTP: moto, a scripted fake SageMaker endpoint, a closed port."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import aws as deploy_support
from tests.support.aws import ACCOUNT, IMAGE, REGION
from tests.support.server import free_port

ENDPOINT = "yolov7-20300101-000000"


def write_state(home, **extra) -> None:
    deploy_support.write_state(home, prefix="yolov7", **extra)


def deployed_state(home) -> None:
    write_state(
        home,
        endpoint={
            "name": ENDPOINT,
            "config": "yolov7-config-20300101-000000",
            "model": "yolov7-model-20300101-000000",
            "instance_type": "ml.c5.xlarge",
            "instance_count": 1,
        },
    )


# --- in-process, Stubber errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "code", "http", "exit_code", "says"),
    [
        (
            "create_model",
            "AccessDeniedException",
            400,
            1,
            "AWS denied CreateModel (AccessDeniedException): User: arn:aws:iam::123456789012:"
            "user/dev is not authorized to perform: sagemaker:CreateModel. Grant it to the "
            "identity running deploy (see iam/deploy-operator-policy.json).",
        ),
        (
            "create_endpoint",
            "ResourceLimitExceeded",
            400,
            1,
            "an AWS quota stopped CreateEndpoint (ResourceLimitExceeded)",
        ),
        (
            "create_endpoint_config",
            "ValidationException",
            400,
            2,
            "AWS rejected CreateEndpointConfig as invalid",
        ),
        ("create_model", "ExpiredTokenException", 400, 1, "the AWS credentials have expired"),
        ("create_model", "ThrottlingException", 400, 1, "AWS kept throttling CreateModel"),
        ("create_model", "InternalFailure", 500, 1, "Retry in a minute"),
    ],
)
def test_aws_errors_during_up_are_one_line_and_an_exit_code(
    moto, cli, stubbed, operation, code, http, exit_code, says
):
    sm = stubbed.stub("sagemaker")
    messages = {
        "AccessDeniedException": "User: arn:aws:iam::123456789012:user/dev is not authorized to "
        "perform: sagemaker:CreateModel",
        "ResourceLimitExceeded": "The account-level service limit 'ml.c5.xlarge for endpoint "
        "usage' is 0 Instances, with current utilization of 0 Instances and a request delta of "
        "1 Instances.",
    }
    if operation != "create_model":
        sm.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:eu-west-1:1:model/m"})
    if operation == "create_endpoint":
        sm.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": "arn:aws:sagemaker:eu-west-1:1:endpoint-config/c"},
        )
    sm.add_client_error(operation, code, messages.get(code, "nope"), http_status_code=http)
    result = cli("up", "--image", IMAGE, aws=stubbed)
    assert result.code == exit_code
    line = result.error_line()
    assert says in line
    if code == "ResourceLimitExceeded":
        assert "Service Quotas" in line and "ml.c5.xlarge for endpoint usage" in line


def test_an_endpoint_that_fails_prints_the_reason_and_where_the_logs_are(moto, cli, stubbed):
    reason = (
        "The primary container for production variant AllTraffic did not pass the ping health "
        "check. Please check CloudWatch logs for this endpoint."
    )
    sm = stubbed.stub("sagemaker")
    sm.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:eu-west-1:1:model/m"})
    sm.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": "arn:aws:sagemaker:eu-west-1:1:endpoint-config/c"},
    )
    sm.add_response("create_endpoint", {"EndpointArn": "arn:aws:sagemaker:eu-west-1:1:endpoint/e"})
    for status in ("Creating", "Creating", "Failed"):
        answer = {
            "EndpointName": "e",
            "EndpointArn": "arn:aws:sagemaker:eu-west-1:1:endpoint/e",
            "EndpointStatus": status,
            "CreationTime": 0,
            "LastModifiedTime": 0,
        }
        if status == "Failed":
            answer["FailureReason"] = reason
        sm.add_response("describe_endpoint", answer)
    result = cli("up", "--image", IMAGE, "--endpoint-name", "e", "--poll", "0", aws=stubbed)
    assert result.code == 1
    stubbed.verify()
    line = result.error_line()
    assert line.startswith("error: endpoint e is Failed after 0:00: The primary container")
    assert "CloudWatch log group /aws/sagemaker/Endpoints/e" in line
    assert "remove it with `python -m deploy down`" in line
    assert result.err.count("endpoint e: Creating") == 1  # one progress line per status change


def test_expired_credentials_while_reading_status(moto, cli, stubbed, tmp_path):
    deployed_state(tmp_path)
    sm = stubbed.stub("sagemaker")
    sm.add_client_error(
        "describe_endpoint", "ExpiredTokenException", "The security token included in the "
        "request is expired", http_status_code=400,
    )  # fmt: skip
    result = cli("status", aws=stubbed)
    assert result.code == 1
    assert result.error_line() == (
        "error: the AWS credentials have expired (ExpiredTokenException on DescribeEndpoint). "
        "Refresh them (`aws sso login`, new keys, or run again to re-assume --assume-role)."
    )


# --- child processes, real HTTP ---------------------------------------------------------------


class ScriptedSageMaker(ThreadingHTTPServer):
    """Answers SageMaker JSON calls from a script of (HTTP status, body); counts requests."""

    def __init__(self, script: list[tuple[int, dict]]):
        self.script = list(script)
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server: ScriptedSageMaker = self.server
        server.requests.append(self.headers.get("X-Amz-Target", ""))
        status, body = server.script.pop(0) if len(server.script) > 1 else server.script[0]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted():
    servers = []

    def start(script):
        server = ScriptedSageMaker(script)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


THROTTLED = (400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
IN_SERVICE = (
    200,
    {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}",
        "EndpointConfigName": "yolov7-config-20300101-000000",
        "EndpointStatus": "InService",
        "CreationTime": 1893456000,
        "LastModifiedTime": 1893456000,
    },
)


def sagemaker_at(server) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL_SAGEMAKER": f"http://127.0.0.1:{server.server_address[1]}"}


def test_throttling_is_retried_by_botocore_then_succeeds(moto, cli_process, scripted, tmp_path):
    deployed_state(tmp_path)
    server = scripted([THROTTLED, THROTTLED, IN_SERVICE])
    result = cli_process("status", env={**sagemaker_at(server), "AWS_MAX_ATTEMPTS": "3"})
    assert result.code == 0, result.err
    assert f"endpoint   {ENDPOINT}  InService" in result.out
    assert server.requests == ["SageMaker.DescribeEndpoint"] * 3


def test_throttling_that_does_not_stop_is_one_line_exit_1(moto, cli_process, scripted, tmp_path):
    deployed_state(tmp_path)
    server = scripted([THROTTLED])
    result = cli_process("status", env={**sagemaker_at(server), "AWS_MAX_ATTEMPTS": "2"})
    assert result.code == 1
    assert result.error_line() == (
        "error: AWS kept throttling DescribeEndpoint after 2 attempts (ThrottlingException). "
        "Wait a minute and retry, or raise AWS_MAX_ATTEMPTS / set AWS_RETRY_MODE=adaptive."
    )
    assert len(server.requests) == 2


def test_access_denied_over_http_names_the_policy(moto, cli_process, scripted, tmp_path):
    deployed_state(tmp_path)
    denied = (
        400,
        {
            "__type": "AccessDeniedException",
            "Message": f"User: arn:aws:iam::{ACCOUNT}:user/dev is not authorized to perform: "
            f"sagemaker:DescribeEndpoint on resource: arn:aws:sagemaker:{REGION}:{ACCOUNT}:"
            f"endpoint/{ENDPOINT} because no identity-based policy allows the "
            "sagemaker:DescribeEndpoint action",
        },
    )
    server = scripted([denied])
    result = cli_process("status", env=sagemaker_at(server))
    assert result.code == 1
    line = result.error_line()
    assert line.startswith("error: AWS denied DescribeEndpoint (AccessDeniedException): User: ")
    assert line.endswith("(see iam/deploy-operator-policy.json).")
    assert len(server.requests) == 1  # access denied is not retried


def test_unreachable_aws_is_one_line_exit_1(moto, cli_process):
    closed = f"http://127.0.0.1:{free_port()}"
    result = cli_process("status", env={"AWS_ENDPOINT_URL": closed, "AWS_MAX_ATTEMPTS": "1"})
    assert result.code == 1
    assert result.error_line() == (
        f"error: could not reach {closed}/. Check the network, the region, and "
        "AWS_ENDPOINT_URL if you set it."
    )


def test_no_credentials_is_one_line_exit_1(moto, cli_process):
    result = cli_process("status", drop=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    assert result.code == 1
    assert result.error_line() == (
        "error: no AWS credentials were found. Run `aws configure` or `aws sso login`, pass "
        "--profile, or set AWS_PROFILE."
    )


def test_unknown_profile_is_an_input_error(moto, cli_process):
    result = cli_process("status", "--profile", "nope")
    assert result.code == 2
    assert "The config profile (nope) could not be found" in result.error_line()


def test_no_region_is_an_input_error(moto, cli_process):
    result = cli_process("status", drop=("AWS_DEFAULT_REGION",))
    assert result.code == 2
    assert result.error_line().startswith("error: no AWS region is set. Pass --region")


def test_missing_execution_role_is_an_input_error(moto, cli_process):
    result = cli_process("up", "--image", IMAGE, drop=("SAGEMAKER_ROLE_ARN",))
    assert result.code == 2
    assert result.error_line().startswith(
        "error: no SageMaker execution role. Pass --role ARN or set SAGEMAKER_ROLE_ARN"
    )


def test_a_corrupt_state_file_is_an_input_error(moto, cli_process, tmp_path):
    (tmp_path / ".deploy").mkdir()
    (tmp_path / ".deploy" / "state.json").write_text("{not json")
    result = cli_process("status")
    assert result.code == 2
    assert "cannot read the state file .deploy/state.json" in result.error_line()


def test_a_state_from_another_region_is_not_mixed(moto, cli_process, tmp_path):
    deployed_state(tmp_path)
    result = cli_process("status", "--region", "us-west-2")
    assert result.code == 2
    assert result.error_line() == (
        "error: the state file records resources in eu-west-1, not us-west-2. Pass --region "
        "eu-west-1, or use another --state for us-west-2."
    )


def test_bad_arguments_exit_2_from_argparse(cli_process):
    result = cli_process("up", "--instance-count", "many")
    assert result.code == 2 and "invalid int value: 'many'" in result.err
