"""support.bounded: YAML and JSON inputs are read with size, depth and alias-expansion limits (issue 19, point 4).

The bombs are the classic ones: "billion laughs" (nine levels of nine aliases, 9^9 expanded nodes), merge-key
fan-out, a recursive alias, nesting deeper than the interpreter's stack, and files that are not regular files.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cicd_tools.support.bounded import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_YAML_BYTES,
    MAX_YAML_NODES,
    InputRefused,
    load_json_bounded,
    load_yaml_bounded,
    loads_json_bounded,
    read_text_bounded,
)
from cicd_tools.support.errors import ExitCode, UsageError


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def merge_fanout(levels: int = 30, width: int = 4) -> str:
    lines = ["m0: &m0 {k0: 1}"]
    for i in range(1, levels + 1):
        lines.append(f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * width) + f"], k{i}: 1}}")
    return "\n".join(lines) + "\n"


def test_refusals_are_usage_errors() -> None:
    assert issubclass(InputRefused, UsageError) and InputRefused.exit_code == ExitCode.USAGE


def test_billion_laughs_is_refused_while_composing() -> None:
    with pytest.raises(InputRefused, match=f"expands to more than {MAX_YAML_NODES:,} nodes"):
        load_yaml_bounded(billion_laughs())


def test_merge_key_fanout_is_refused_like_aliases() -> None:
    with pytest.raises(InputRefused, match="expands to more than"):
        load_yaml_bounded(merge_fanout())


def test_a_few_aliases_still_load() -> None:
    # Anchors and aliases are ordinary YAML (Azure Pipelines templates, GitHub's YAML anchors): small ones pass.
    assert load_yaml_bounded(billion_laughs(levels=2, width=3))["a2"] == [[["lol"] * 3] * 3] * 3
    assert load_yaml_bounded("base: &b {x: 1}\nderived: {<<: *b, y: 2}\n")["derived"] == {"x": 1, "y": 2}


def test_a_recursive_alias_is_refused() -> None:
    # PyYAML composes "&x [*x]" into a list that contains itself; a linter walking it would never end.
    with pytest.raises(InputRefused, match="alias inside the node it names"):
        load_yaml_bounded("a: &x [*x]\n")


@pytest.mark.parametrize("opener, closer", [("[", "]"), ("{a: ", "}")])
def test_yaml_nested_beyond_the_depth_limit_is_refused(opener: str, closer: str) -> None:
    with pytest.raises(InputRefused, match=f"more than {MAX_DEPTH} levels deep"):
        load_yaml_bounded(opener * 100_000 + "1" + closer * 100_000)


def test_yaml_at_the_depth_limit_loads() -> None:
    value = load_yaml_bounded("[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH)
    for _ in range(MAX_DEPTH):
        value = value[0]
    assert value == 1


def test_yaml_over_the_size_cap_is_refused_before_parsing() -> None:
    with pytest.raises(InputRefused, match="larger than 1 MiB"):
        load_yaml_bounded("#" * (MAX_YAML_BYTES + 1))


def test_every_document_of_a_stream_is_bounded() -> None:
    assert load_yaml_bounded("a: 1\n---\nb: 2\n", all_documents=True) == [{"a": 1}, {"b": 2}]
    with pytest.raises(InputRefused):
        load_yaml_bounded("a: 1\n---\n" + billion_laughs(), all_documents=True)


def test_yaml_syntax_errors_stay_yaml_errors() -> None:
    with pytest.raises(yaml.YAMLError):
        load_yaml_bounded("a: [1, 2\n")


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=12), st.integers(min_value=1, max_value=12))
def test_aliased_documents_load_or_are_refused_by_their_expanded_size(levels: int, width: int) -> None:
    # Nodes once every alias is expanded: a0 is a list of `width` scalars, each a<i> a list of `width` a<i-1>;
    # the top mapping holds every a<i> under its key.
    node = 1 + width
    expanded = 1 + (1 + node)
    for _ in range(levels):
        node = 1 + width * node
        expanded += 1 + node
    try:
        load_yaml_bounded(billion_laughs(levels, width))
    except InputRefused:
        assert expanded > MAX_YAML_NODES
    else:
        assert expanded <= MAX_YAML_NODES


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=5000), st.sampled_from(["[", "{", '{"a":']))
def test_json_depth_is_refused_past_the_limit_never_a_recursion_error(depth: int, opener: str) -> None:
    closer = {"[": "]", "{": "}", '{"a":': "}"}[opener]
    text = opener * depth + ("1" if opener != "{" else "") + closer * depth
    try:
        loads_json_bounded(text)
    except InputRefused:
        assert depth > MAX_DEPTH
    except json.JSONDecodeError:
        assert opener == "{"  # "{{1}}" is not JSON: a syntax error, still not a crash
    else:
        assert depth <= MAX_DEPTH


def test_json_100k_deep_is_refused() -> None:
    with pytest.raises(InputRefused, match="more than 128 levels deep"):
        loads_json_bounded("[" * 100_000 + "]" * 100_000)


def test_a_json_file_over_the_cap_is_refused_after_reading_at_most_cap_plus_one_bytes(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b"[" + b" " * MAX_FILE_BYTES + b"]")
    with pytest.raises(InputRefused, match="larger than 10 MiB"):
        load_json_bounded(big)


def test_a_json_file_with_a_bom_loads(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"a": [1]}).encode())
    assert load_json_bounded(path) == {"a": [1]}


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _capture(outcome, fifo), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert isinstance(outcome[0], InputRefused) and "is not a regular file (a FIFO)" in str(outcome[0])


def _capture(outcome: list[BaseException], path: Path) -> None:
    try:
        read_text_bounded(path)
    except BaseException as exc:  # handed to the test thread
        outcome.append(exc)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused(device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"{device} does not exist here")
    with pytest.raises(InputRefused, match=r"is not a regular file \(a device\)"):
        read_text_bounded(device)


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputRefused, match=r"is not a regular file \(a folder\)"):
        read_text_bounded(tmp_path)


def test_a_missing_file_is_an_os_error_for_the_caller_to_word(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_text_bounded(tmp_path / "absent.json")


def test_control_characters_in_a_refused_name_are_escaped(tmp_path: Path) -> None:
    odd = tmp_path / "a\nb\x1b[31m"
    odd.mkdir()
    with pytest.raises(InputRefused) as caught:
        read_text_bounded(odd)
    assert "a\\nb\\x1b[31m" in caught.value.message and "\x1b" not in caught.value.message


def test_a_pointer_nested_deeper_than_the_stack_is_malformed_not_a_crash() -> None:
    from cicd_tools.pointer.model import parse_pointer
    from cicd_tools.support.errors import ContractViolation

    with pytest.raises(ContractViolation) as caught:
        parse_pointer(b"[" * 30_000 + b"]" * 30_000, source="latest.json")  # under the 64 KiB cap
    assert caught.value.code == "PointerMalformed"


def test_an_ip_echo_answer_nested_deeper_than_the_stack_is_no_address() -> None:
    from cicd_tools.storage.agent_ip import parse_echo_body

    with pytest.raises(ValueError, match="nested too deeply"):
        parse_echo_body('{"a":' * 100_000 + "1" + "}" * 100_000)
