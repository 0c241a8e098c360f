"""The site's own ClientApp runner: runs only the ClientApp installed in this image.

Stands in for Flower's ``flower-superexec`` (``flwr.supercore.superexec.run_superexec``) and
``flwr-clientapp`` (``flwr.supernode.runtime.run_clientapp.run_clientapp``) beside a
``flower-supernode --isolation process``. Flower's pair unpacks the run's app bundle (FAB)
and imports the ClientApp from it, so the coordinator, who builds the FAB, would choose the
code that runs next to patient data. Here the protocol is Flower's own (its Runtime API
client, ``pull_task_input``, ``push_message``, ``push_task_output``, task heartbeats); only
two steps differ: the FAB is checked against the site's pin (``client.app_pin``) and never
installed, and the ClientApp is ``client.app:app`` from the installed package.

Each task still runs in a process of its own, but one forked from the runner after it has
imported the ClientApp once (:func:`_preload`), not a new interpreter: importing torch, Opacus
and the rest took ~5 s a message, a wait at every site on every exchange of a round. The
runner itself never loads a site's data, opens its ledger, draws randomness or runs a torch
operation, so a forked task starts from imported modules only (its noise keys are made in the
task, from the OS: client.site_randomness); it inherits the runner's memory, which holds the
auth secret of step 1 of docs/pinned_code.md, as the same installed code could read it anyway.

    python -P -m client.pinned_runner serve --runtime-api-address 127.0.0.1:9094 --pin PIN
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import httpx
from flwr.app import Context, Error, Message
from flwr.common.constant import SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
from flwr.supercore.app_utils import start_parent_process_monitor
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
    SuperExecAuthHttpInterceptor,
)
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import (
    pull_task_input,
    push_message,
    push_task_output,
)

import client
import federation
from client.app_pin import DEFAULT_PIN, NOT_PINNED, AppPin, installed_code, pin_problems
from federation.core import wire

log = logging.getLogger(__name__)
APP_NOT_PINNED = wire.APP_NOT_PINNED  # error code of the refusal (federation/core/wire.py)
TOKEN_ENV = "LHSFED_TASK_TOKEN"  # the task token travels in the environment, not in argv
POLL_SECONDS = 0.25  # asks the node's local runtime API for a task (Flower's SuperExec: 1 s)


def _runtime_client(address: str, *interceptors) -> RuntimeHttpClient:
    """Plain HTTP to the SuperNode's Runtime API, which listens on 127.0.0.1 only."""
    return RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=True,
        root_certificates=None,
        interceptors=list(interceptors),
        retry_invoker=make_simple_http_retry_invoker(),
    )


def _preload() -> None:
    """Import the installed ClientApp in the runner, so a forked task starts with it imported."""
    import client.app  # noqa: F401 - the import is the point


def _fork_task(address: str, pin: str, token: str) -> int:
    """One process per task, as Flower's SuperExec does: forked from the runner (the child
    watches the runner as a task started by Flower watches its parent, and never returns)."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        start_parent_process_monitor(os.getppid())
        code = run_task(address, AppPin.parse(pin), token)
    except BaseException as err:  # noqa: BLE001 - a task's failure ends the task, not the runner
        log.error("task failed: %s", type(err).__name__)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _reap() -> None:
    """Collect the tasks that ended (no zombie processes)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(address: str, pin: str, secret: bytes | None) -> None:
    """Acquire ClientApp tasks (no other task type) from the SuperNode and run each one."""
    interceptors = [RuntimeVersionHttpInterceptor(component_name="SuperExec")]
    if secret:
        interceptors.append(
            SuperExecAuthHttpInterceptor(
                master_secret=secret, protected_methods=frozenset({"/flwr.proto.Runtime/AcquireTask"})
            )
        )
    _preload()
    runtime = _runtime_client(address, *interceptors)
    log.info(
        "pinned ClientApp runner: %s from %s, app pin %s", "client.app:app", Path(client.__file__).parent, pin
    )
    while True:
        reply = runtime.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
        if reply.HasField("task") and reply.token:
            _fork_task(address, pin, reply.token)
        _reap()
        time.sleep(POLL_SECONDS)


def _refusal(message: Message, run_id: int, problems: list[str]) -> Message:
    """The reply says only the category; the site's log says why."""
    log.error("refused run %s: %s: %s", run_id, NOT_PINNED, "; ".join(problems))
    reason = f"{NOT_PINNED}: the site runs only its installed ClientApp (see docs/pinned_code.md)"
    return Message(Error(code=APP_NOT_PINNED, reason=reason), reply_to=message)


def _execute(message: Message, context: Context) -> tuple[Message, str, str]:
    """Run the installed ClientApp; an exception becomes Flower's own error reply."""
    try:
        from client.app import app  # the installed package, never the bundle

        return app(message=message, context=context), SubStatus.COMPLETED, ""
    except Exception as ex:  # noqa: BLE001 - as flwr-clientapp: every failure is a reply
        # The app's own error mod already answers every failure; this is the last line, and
        # like it sends a category only (the exception text stays in the site's log).
        from client.site_errors import error_reply

        reply = error_reply(message, context, ex)
        return reply, SubStatus.FAILED, reply.error.reason


def run_task(address: str, pin: AppPin, token: str) -> int:
    """One task: pull its input, check the FAB, run or refuse, push the reply and status."""
    runtime = _runtime_client(
        address,
        RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
        RuntimeTokenHttpInterceptor(token),
    )
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(runtime))
    heartbeat.start()
    context, status, details = None, SubStatus.FAILED, "ClientApp task failed"
    try:
        message, context, run, fab = pull_task_input(runtime)
        package_dirs = {p.__name__: Path(p.__file__).parent for p in (client, federation)}
        if problems := pin_problems(fab.content, pin, installed_code(package_dirs)):
            reply, details = _refusal(message, run.run_id, problems), NOT_PINNED
        else:
            reply, status, details = _execute(message, context)
        push_message(runtime, reply, context)
    finally:
        push_task_output(runtime, context, status, details)
        heartbeat.stop()
        runtime.close()
    return 0 if status == SubStatus.COMPLETED else 1


def _configure_logging() -> None:
    """Our lines (and the ClientApp's) to stderr; Flower keeps its own handler, and the
    root logger stays unconfigured so httpx does not log every runtime API call."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("pinned-runner %(levelname)s: %(message)s"))
    for name in (log.name, "client"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m client.pinned_runner", description=__doc__)
    parser.add_argument("mode", choices=("serve", "task"))
    parser.add_argument("--runtime-api-address", default="127.0.0.1:9094")
    parser.add_argument("--pin", default=DEFAULT_PIN, help="PUBLISHER/NAME[==VERSION]")
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--superexec-auth-secret-file", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging()
    try:
        pin = AppPin.parse(args.pin)
        secret = (
            Path(args.superexec_auth_secret_file).read_bytes() if args.superexec_auth_secret_file else None
        )
    except (ValueError, OSError) as err:
        print(f"pinned_runner: {err}", file=sys.stderr)
        return 64
    if args.mode == "serve":
        try:
            serve(args.runtime_api_address, args.pin, secret)
        except (KeyboardInterrupt, httpx.HTTPError) as err:
            log.error("runner stopped: %s", type(err).__name__)
        return 1  # serving never ends on its own: the entrypoint stops the node too
    if not (token := os.environ.get(TOKEN_ENV, "")):
        print(f"pinned_runner: {TOKEN_ENV} is not set (task mode is started by serve)", file=sys.stderr)
        return 64
    if args.parent_pid is not None:
        start_parent_process_monitor(args.parent_pid)
    return run_task(args.runtime_api_address, pin, token)


if __name__ == "__main__":
    sys.exit(main())
