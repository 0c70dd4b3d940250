"""support.outpath: output files replace only a regular file or nothing (issue 19, point 5).

``os.replace`` renames over whatever the name points at, so ``flow --report /dev/full`` as root replaced the device
node with a regular file. Real devices are not touched here (the tests may run as root): a FIFO, a symlink to a
folder, to a FIFO and to /dev/null stand in for them, all inside tmp_path.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cicd_tools.support.errors import ExitCode
from cicd_tools.support.outpath import OutputRefused, printable, resolve_output, write_atomic

CLI = ("import sys\ntry:\n    from cicd_tools.cli.main import main\nexcept ImportError:\n"
       "    from cicd_tools.cli import main\nsys.exit(main(sys.argv[1:]))")


def _special_targets(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    links = {"link-to-folder": folder, "link-to-fifo": fifo, "link-to-device": Path("/dev/null"),
             "dangling-link": tmp_path / "absent"}
    for name, target in links.items():
        (tmp_path / name).symlink_to(target)
    return {"fifo": fifo, "folder": folder, **{name: tmp_path / name for name in links}}


def _snapshot(path: Path) -> tuple[int, int, str | None]:
    info = os.lstat(path)
    return info.st_mode, info.st_ino, os.readlink(path) if stat.S_ISLNK(info.st_mode) else None


@pytest.mark.parametrize("kind", ["fifo", "folder", "link-to-folder", "link-to-fifo", "link-to-device",
                                  "dangling-link"])
def test_a_target_that_is_not_a_regular_file_is_refused_and_left_untouched(tmp_path: Path, kind: str) -> None:
    target = _special_targets(tmp_path)[kind]
    before = _snapshot(target)
    with pytest.raises(OutputRefused) as caught:
        write_atomic(target, "{}\n", what="evidence report")
    assert caught.value.exit_code == ExitCode.USAGE
    assert "nothing was written" in caught.value.message and str(target) in caught.value.message
    assert _snapshot(target) == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp file left


def test_a_symlink_to_a_regular_file_replaces_that_file_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old\n")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert write_atomic(link, "new\n") == real
    assert link.is_symlink() and real.read_text() == "new\n"


def test_a_regular_file_is_replaced_and_a_new_file_created(tmp_path: Path) -> None:
    existing = tmp_path / "a.json"
    existing.write_text("old\n")
    write_atomic(existing, "new\n")
    write_atomic(tmp_path / "b.json", "fresh\n")
    assert existing.read_text() == "new\n" and (tmp_path / "b.json").read_text() == "fresh\n"


def test_a_missing_folder_outside_the_working_directory_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    target = tmp_path / "nonexistent" / "x" / "y.json"
    with pytest.raises(OutputRefused, match=f"does not exist: {tmp_path / 'nonexistent' / 'x'}"):
        write_atomic(target, "{}")
    assert not (tmp_path / "nonexistent").exists()


def test_a_missing_folder_inside_the_working_directory_is_created(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_atomic(Path("out") / "evidence.json", "{}\n")
    assert (tmp_path / "out" / "evidence.json").read_text() == "{}\n"


def test_a_state_folder_is_created_when_the_caller_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    state = tmp_path / "agent-temp" / "firewall-state.json"  # outside the working directory
    write_atomic(state, "{}", make_parents=True)
    assert state.read_text() == "{}"


def test_a_parent_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputRefused, match="is not a folder"):
        resolve_output(tmp_path / "file" / "x.json")


def test_control_characters_in_paths_are_escaped_in_messages(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    odd = tmp_path / "a\nb\x1b[31m" / "r.json"
    with pytest.raises(OutputRefused) as caught:
        write_atomic(odd, "{}")
    assert "a\\nb\\x1b[31m" in caught.value.message
    assert "\n" not in caught.value.message and "\x1b" not in caught.value.message


def test_printable_escapes_only_what_a_terminal_would_interpret() -> None:
    assert printable("out/évidence ü.json") == "out/évidence ü.json"
    assert printable("a\nb\rc\x1b[2Jd\u202ee\x00") == "a\\nb\\rc\\x1b[2Jd\\u202ee\\x00"


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "PYTHONPATH": str(Path(__file__).parents[2]),
           "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", CLI, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_flow_report_on_a_fifo_is_refused_before_any_step(tmp_path: Path) -> None:
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    done = _cli(["flow", "--report", str(fifo)], tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"the evidence report {fifo} is a FIFO; nothing was written" in done.stderr
    assert "Traceback" not in done.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_report_schema_write_through_a_link_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "schema.json"
    link.symlink_to("/dev/null")
    done = _cli(["report", "schema", "--write", str(link)], tmp_path)
    assert done.returncode == 2 and "is a symlink to a device; nothing was written" in done.stderr
    assert os.readlink(link) == "/dev/null"


def test_pointer_schema_write_with_a_newline_and_escape_in_the_path_is_printed_escaped(tmp_path: Path) -> None:
    odd = tmp_path / "x\n##vso[task.setvariable variable=PWNED]yes\x1b[31m" / "s.json"
    (tmp_path / "work").mkdir()
    done = _cli(["pointer", "schema", "--write", str(odd)], tmp_path / "work")
    assert done.returncode == 2
    # the newline and ESC are shown escaped (and the CI guard defuses the `##vso[` it finds anywhere in a line)
    assert "x\\n##vso" in done.stderr and "yes\\x1b[31m" in done.stderr
    assert "\n##vso" not in done.stderr and "\x1b" not in done.stderr and "##vso[" not in done.stderr


def test_report_schema_write_creates_the_file(tmp_path: Path) -> None:
    done = _cli(["report", "schema", "--write", "schema.json"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "schema.json").read_text())["$schema"].startswith("https://json-schema.org/")


def test_a_new_file_gets_the_umask_mode_and_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        write_atomic(tmp_path / "new.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "new.json").st_mode) == 0o640  # as open() would create it
    kept = tmp_path / "kept.json"
    kept.write_text("old")
    kept.chmod(0o604)
    write_atomic(kept, "new")
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o604
    write_atomic(tmp_path / "private.json", "{}", mode=0o600)
    assert stat.S_IMODE(os.stat(tmp_path / "private.json").st_mode) == 0o600


@pytest.mark.parametrize("command", [["adf", "lint"], ["ci", "lint"], ["report", "show"], ["aml", "lint-job"]])
def test_an_escape_sequence_in_a_missing_file_name_is_printed_escaped(tmp_path: Path, command: list[str]) -> None:
    name = str(tmp_path / "no\x1b[2J\rsuch.json")
    done = _cli([*command, name], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "no\\x1b[2J\\rsuch.json" in done.stderr
    assert "\x1b" not in done.stderr and "\r" not in done.stderr
