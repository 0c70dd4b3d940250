"""Progress lines (throttled, elapsed, what is awaited) and the filter that keeps SDK escape codes out of CI logs."""

from __future__ import annotations

import io
import logging
import sys
import threading

import pytest

from cicd_tools.support.progress import Progress, heartbeat, human_bytes, retry_line
from cicd_tools.support.terminal import PlainStream, colour_allowed, plain_sdk_console


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_are_throttled_and_say_how_far_and_how_long(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = logging.getLogger("cicd_tools.test.progress")
    caplog.set_level(logging.INFO, logger=log.name)
    work = Progress("uploading train", logger=log, total_items=3, total_bytes=3072, interval=5, clock=clock)
    work.start()
    clock.now += 1
    work.update(items=1, nbytes=1024)  # within the interval: no line
    clock.now += 5
    work.update(items=1, nbytes=1024, status="last status 503")
    clock.now += 1
    work.done()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "uploading train: 0/3 files, 0 B of 3.0 KiB, 0.0 s elapsed",
        "uploading train: 2/3 files, 2.0 KiB of 3.0 KiB, last status 503, 6.0 s elapsed",
        "uploading train: 2/3 files, 2.0 KiB of 3.0 KiB, done, 7.0 s elapsed",
    ]


def test_retry_line_names_what_why_and_the_next_wait() -> None:
    assert retry_line("GET storageAccounts/sa", "503 ServerBusy", 2, 4.0, 5) == (
        "GET storageAccounts/sa: 503 ServerBusy; retry 2/5 in 4.0 s"
    )
    assert human_bytes(5 * 1024 * 1024) == "5.0 MiB"


def test_heartbeat_speaks_while_an_opaque_call_runs(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("cicd_tools.test.heartbeat")
    caplog.set_level(logging.INFO, logger=log.name)
    ticked = threading.Event()

    class Spy(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "still waiting" in record.getMessage():
                ticked.set()

    spy = Spy()
    log.addHandler(spy)
    try:
        with heartbeat("registering a:1", logger=log, interval=0.01):
            assert ticked.wait(30), "no heartbeat line while the call ran"
    finally:
        log.removeHandler(spy)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("registering a:1") and messages[-1].startswith("registering a:1")
    assert "done" in messages[-1]


def test_heartbeat_says_failed_when_the_call_fails(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("cicd_tools.test.heartbeat2")
    caplog.set_level(logging.INFO, logger=log.name)
    with pytest.raises(RuntimeError), heartbeat("registering b:1", logger=log, interval=60):
        raise RuntimeError("boom")
    assert "failed" in caplog.records[-1].getMessage()


def test_plain_stream_drops_escape_codes_and_blank_lines_but_keeps_text() -> None:
    sink = io.StringIO()
    stream = PlainStream(sink)
    # what azure-ai-ml prints after an upload: print(Fore.RESET + "\n", file=sys.stderr)
    print("\x1b[39m\n", file=stream)
    print("\x1b[32mUploading src (0.01 MBs)\x1b[39m", file=stream)
    print("\n", file=stream)
    assert sink.getvalue() == "Uploading src (0.01 MBs)\n"


def test_no_colour_when_no_color_is_set_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert colour_allowed(Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_allowed(Tty())


def test_plain_console_is_removed_by_the_last_of_concurrent_users(capsys: pytest.CaptureFixture[str]) -> None:
    original = sys.stderr
    entered, release = threading.Barrier(3), threading.Event()

    def worker() -> None:
        with plain_sdk_console():
            entered.wait()
            release.wait()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    entered.wait()
    assert isinstance(sys.stderr, PlainStream)
    release.set()
    for t in threads:
        t.join()
    assert sys.stderr is original


def test_blob_retries_say_what_why_and_the_next_wait(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import responses
    from azure.core.pipeline.transport import HttpTransport

    from cicd_tools.cli._clients import container_client
    from cicd_tools.settings.resolve import Settings

    waits: list[float] = []
    monkeypatch.setattr(HttpTransport, "sleep", lambda self, seconds: waits.append(seconds))
    caplog.set_level(logging.INFO, logger="cicd_tools")
    endpoint = "http://127.0.0.1:10000/acct"
    listing = "<?xml version='1.0'?><EnumerationResults ContainerName='ml-globals'><Blobs /></EnumerationResults>"
    settings = Settings(auth_mode="key", pointer_container="ml-globals", connection_string=(
        f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5a2V5a2V5;BlobEndpoint={endpoint}"))
    with responses.RequestsMock() as mock:
        url = f"{endpoint}/ml-globals"
        mock.add(responses.GET, url, status=503, body="busy")
        mock.add(responses.GET, url, status=503, body="busy")
        mock.add(responses.GET, url, status=200, body=listing,
                 content_type="application/xml")
        list(container_client(settings).list_blobs())
    lines = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(lines) == 2 and len(waits) == 2  # the SDK's own waits, each announced before it is slept
    assert lines[0].startswith("blob GET /acct/ml-globals: HTTP 503")
    assert f"retry 1/3 in {waits[0]:.1f} s" in lines[0] and f"retry 2/3 in {waits[1]:.1f} s" in lines[1]
    assert waits[0] >= 12  # azure-storage-blob's ExponentialRetry: 15 s +- 3 s before the first retry


def test_an_opaque_call_that_returned_ends_on_its_totals_not_zero(caplog: pytest.LogCaptureFixture) -> None:
    # issue 20 case 5: "0/3 files, 0 B of 5.3 KiB, done" printed beside "3 files uploaded"
    log = logging.getLogger("cicd_tools.test.heartbeat3")
    caplog.set_level(logging.INFO, logger=log.name)
    with heartbeat("registering c:1", logger=log, interval=60, total_items=3, total_bytes=5427):
        pass
    last = caplog.records[-1].getMessage()
    assert "3/3 files, 5.3 KiB of 5.3 KiB, done" in last and "0/3" not in last
