"""`model mirror` without Azure: checkpoint selection, training-state exclusion, hashing, lineage, argument errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.aml.checkpoints import stage_checkpoint
from cicd_tools.aml.model_sources import output_location, require_completed, split_training_and_validation
from cicd_tools.aml.models import Lineage, model_tags, validate_run_id
from cicd_tools.cli.main import main
from cicd_tools.support.errors import RunFailed, UsageError

CODE_ID = ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
           "/codes/training-code/versions/7")


def write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def sdk_hash(folder: Path) -> str:
    from azure.ai.ml._utils._asset_utils import get_content_hash, get_ignore_file

    return str(get_content_hash(str(folder), get_ignore_file(str(folder))))


def test_the_highest_checkpoint_is_selected_numerically_not_alphabetically(tmp_path: Path) -> None:
    for step in (2, 10, 9):
        write(tmp_path / f"checkpoint-{step}" / "model.bin", str(step).encode())
    write(tmp_path / "checkpoint-final" / "model.bin")  # not checkpoint-N: ignored
    staged = stage_checkpoint(tmp_path)
    assert staged.checkpoint == "checkpoint-10"
    assert staged.files == ["model.bin"]
    assert Path(staged.entries[0].source).read_bytes() == b"10"


def test_training_state_is_left_out_and_tensorboard_events_beside_the_checkpoints_are_kept(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint-3"
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "rng_state_1.pth"):
        write(ckpt / name)
    write(tmp_path / "runs" / "Dec01" / "events.out.tfevents.1.host")
    write(tmp_path / "checkpoint-1" / "runs" / "events.out.tfevents.0.old")  # an older checkpoint's: not kept
    write(tmp_path / "train.log")  # not TensorBoard: not kept
    staged = stage_checkpoint(tmp_path)
    assert staged.files == ["model.safetensors", "tensorboard/runs/Dec01/events.out.tfevents.1.host"]
    assert sorted(staged.skipped) == ["checkpoint-3/optimizer.pt", "checkpoint-3/rng_state.pth",
                                      "checkpoint-3/rng_state_1.pth", "checkpoint-3/scheduler.pt"]


def test_exclude_patterns_are_configurable(tmp_path: Path) -> None:
    for name in ("model.bin", "optimizer.pt", "extra/cache.tmp"):
        write(tmp_path / name)
    assert stage_checkpoint(tmp_path, excludes=[]).files == ["extra/cache.tmp", "model.bin", "optimizer.pt"]
    assert stage_checkpoint(tmp_path, excludes=["*.tmp"]).files == ["model.bin", "optimizer.pt"]
    assert stage_checkpoint(tmp_path, excludes=["extra/*"]).files == ["model.bin", "optimizer.pt"]


def test_a_flat_folder_hashes_like_the_sdk_and_a_staged_checkpoint_like_the_sdk_over_the_staged_layout(
    tmp_path: Path
) -> None:
    flat = tmp_path / "flat"
    for name, data in (("model.json", b"{}"), ("Metrics.json", b"[1]"), ("sub/a.txt", b"a" * 3000)):
        write(flat / name, data)
    assert stage_checkpoint(flat).content_hash == sdk_hash(flat)

    run = tmp_path / "run"
    write(run / "checkpoint-5" / "model.bin", b"w")
    write(run / "checkpoint-5" / "optimizer.pt", b"o")
    write(run / "logs" / "events.out.tfevents.9", b"e")
    layout = tmp_path / "layout"  # what the model version holds, laid out by hand
    write(layout / "model.bin", b"w")
    write(layout / "tensorboard" / "logs" / "events.out.tfevents.9", b"e")
    assert stage_checkpoint(run).content_hash == sdk_hash(layout)
    shutil.rmtree(layout)


def test_a_missing_or_emptied_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        stage_checkpoint(tmp_path / "nope")
    write(tmp_path / "file")
    with pytest.raises(UsageError, match="is not a folder"):
        stage_checkpoint(tmp_path / "file")
    write(tmp_path / "only-state" / "checkpoint-1" / "optimizer.pt")
    with pytest.raises(UsageError, match=r"besides training state \(checkpoint-1/optimizer.pt\)"):
        stage_checkpoint(tmp_path / "only-state")


def test_lineage_tags_name_the_run_hash_code_version_and_validation(tmp_path: Path) -> None:
    write(tmp_path / "checkpoint-2" / "model.bin")
    staged = stage_checkpoint(tmp_path)
    tags = model_tags(Lineage("train-1", "train-1", CODE_ID, "validate-1", {"validation_mse": "0.01"}, "adf-run"),
                      staged)
    assert tags == {"cicd.sourceRunId": "train-1", "cicd.contentHash": staged.content_hash,
                    "cicd.checkpoint": "checkpoint-2", "cicd.trainingJob": "train-1", "cicd.codeId": CODE_ID,
                    "cicd.codeAsset": "training-code", "cicd.codeVersion": "7", "cicd.adfRunId": "adf-run",
                    "cicd.validationJob": "validate-1", "cicd.validation.validation_mse": "0.01"}


@pytest.mark.parametrize("run_id", ["a,b", "a=b", "with space", "", "-lead"])
def test_run_ids_the_tag_filter_cannot_match_exactly_are_refused(run_id: str) -> None:
    with pytest.raises(UsageError):
        validate_run_id(run_id)


def job(name: str, status: str = "Completed", inputs: dict[str, Any] | None = None,
        outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "properties": {"status": status, "codeId": CODE_ID, "inputs": inputs or {},
                                         "outputs": outputs or {}}}


def test_the_training_job_is_the_one_with_the_output_and_the_validation_the_one_reading_it() -> None:
    train = job("train-1", outputs={"model": {"uri": "azureml://datastores/workspaceblobstore/paths/m/"}})
    validate = job("validate-1", inputs={"model": {"uri": "azureml://jobs/train-1/outputs/model"}},
                   outputs={"metrics": {}})
    other = job("score-1", inputs={"model": {"uri": "azureml://jobs/elsewhere/outputs/model"}})
    assert split_training_and_validation([validate, other, train], "model") == (train, validate)
    assert split_training_and_validation([train], "model") == (train, None)
    with pytest.raises(UsageError, match="no job of the run has an output named 'weights'"):
        split_training_and_validation([train, validate], "weights")
    twin = job("train-2", outputs={"model": {}})
    with pytest.raises(UsageError, match="several training jobs"):
        split_training_and_validation([train, twin], "model")


def test_outputs_and_statuses_are_judged_like_the_service_reports_them() -> None:
    assert output_location(job("t", outputs={"model": {"uri": "azureml://datastores/ds/paths/a/b/"}}), "model") == (
        "ds", "a/b")
    assert output_location(job("t", outputs={"model": {}}), "model") == ("workspaceblobstore", "azureml/t/model")
    with pytest.raises(UsageError, match=r"no output named 'model' \(its outputs: metrics\)"):
        output_location(job("t", outputs={"metrics": {}}), "model")
    with pytest.raises(RunFailed):
        require_completed(job("t", "Failed"), "training")
    with pytest.raises(UsageError, match="is Running, not Completed"):
        require_completed(job("t", "Running"), "training")


@pytest.mark.parametrize(("argv", "code"), [
    (["--from-path", "."], "RunIdMissing"),
    (["--job", "j", "--run-id", "r"], "RunIdUnexpected"),
    (["--from-path", ".", "--run-id", "r", "--validation-job", "v"], "ValidationJobUnexpected"),
    (["--from-path", ".", "--run-id", "a,b"], "InvalidRunId"),
    (["--from-path", "missing-folder", "--run-id", "r"], "CheckpointFolderMissing"),
    (["--from-path", ".", "--run-id", "r", "--tag", "team"], "MalformedTag"),
    (["--from-path", ".", "--run-id", "r", "--tag", "=x"], "MalformedTag"),
    (["--from-path", ".", "--run-id", "r", "--tag", "cicd.sourceRunId=other"], "ReservedTag"),
])
def test_bad_arguments_exit_2_before_any_azure_call(argv: list[str], code: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--output", "json", "model", "mirror", "--name", "m", *argv]) == 2
    assert json.loads(capsys.readouterr().out)["code"] == code


def test_a_missing_model_name_names_the_flag_and_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "mirror", "--job", "j"]) == 2
    assert "--name or set CICD_MODEL_NAME" in capsys.readouterr().err
    assert main(["model", "mirror", "--job", "j", "--name", "bad name"]) == 2


def test_best_effort_turns_a_bad_folder_into_a_warning_with_exit_0(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--output", "json", "model", "mirror", "--name", "m", "--from-path", str(tmp_path / "gone"),
               "--run-id", "r", "--best-effort"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert set(doc) == {"ok", "modelName", "modelVersion", "modelAssetId", "reused", "sourceRunId", "trainingJob",
                        "codeId", "contentHash", "files", "skipped", "skippedUnsafe", "warning", "error"}
    assert doc["ok"] is False and doc["error"]["code"] == "CheckpointFolderMissing"
    assert "does not exist" in doc["warning"]


def test_the_result_file_holds_the_failure_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = tmp_path / "out" / "mirror.json"
    result.parent.mkdir()
    argv = ["model", "mirror", "--name", "m", "--from-path", str(tmp_path / "gone"), "--run-id", "r",
            "--result-file", str(result)]
    assert main(argv) == 2
    doc = json.loads(result.read_text())
    assert doc["ok"] is False and doc["error"]["code"] == "CheckpointFolderMissing" and doc["warning"] is None
    assert main([*argv, "--best-effort"]) == 0
    assert json.loads(result.read_text())["warning"].startswith("model mirror failed")
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main([*argv[:-1], str(blocked / "x.json"), "--best-effort"]) == 2  # unwritable: exit 2, not 70
    assert f"the folder of the result file {blocked / 'x.json'} is not a folder" in capsys.readouterr().err


def test_model_mirror_help_imports_no_azure_sdk() -> None:
    import subprocess
    import sys

    probe = ("import sys\nfrom cicd_tools.cli.main import main\ntry:\n    main(['model', 'mirror', '--help'])\n"
             "except SystemExit:\n    pass\n"
             "sys.stderr.write('AZURE=%s' % sorted(m for m in sys.modules if m.startswith('azure')))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert "AZURE=[]" in proc.stderr, proc.stderr


class FakeContainer:
    def __init__(self) -> None:
        self.uploaded: dict[str, bytes] = {}

    def __enter__(self) -> FakeContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def upload_blob(self, name: str, data: Any, **kwargs: Any) -> None:
        self.uploaded[name] = data.read()


class FakeModels:
    """The tagged lookup answers from a script: one list per call."""

    def __init__(self, *answers: list[Any]) -> None:
        self.answers = list(answers)

    def versions_for_run(self, name: str, run_id: str) -> list[Any]:
        return self.answers.pop(0)


def test_a_version_registered_meanwhile_by_a_concurrent_mirror_is_reused_not_duplicated(tmp_path: Path) -> None:
    from cicd_tools.aml.models import ModelVersionInfo, Registry, mirror

    write(tmp_path / "model.bin", b"w")
    staged = stage_checkpoint(tmp_path)
    theirs = ModelVersionInfo("m", "1", "/id/m/1", {"cicd.sourceRunId": "r", "cicd.contentHash": staged.content_hash})
    container = FakeContainer()
    registry = Registry(FakeModels([], [theirs]), ml_client_factory=lambda: pytest.fail("registered twice"),
                        credential=None)  # type: ignore[arg-type]
    registry.container = lambda: container  # type: ignore[method-assign]
    result = mirror(registry, "m", staged, Lineage("r"))
    assert (result.model, result.reused, result.uploaded) == (theirs, True, 1)
    assert container.uploaded == {f"cicd-models/m/{staged.content_hash}/model.bin": b"w"}


def test_other_content_for_a_mirrored_run_is_refused_before_any_upload(tmp_path: Path) -> None:
    from cicd_tools.aml.models import ModelVersionInfo, Registry, mirror
    from cicd_tools.support.errors import ContractViolation

    write(tmp_path / "model.bin", b"new")
    staged = stage_checkpoint(tmp_path)
    old = ModelVersionInfo("m", "3", "/id/m/3", {"cicd.sourceRunId": "r", "cicd.contentHash": "0" * 64})
    registry = Registry(FakeModels([old]), ml_client_factory=lambda: pytest.fail("registered"),
                        credential=None)  # type: ignore[arg-type]
    registry.container = lambda: pytest.fail("uploaded")  # type: ignore[method-assign]
    with pytest.raises(ContractViolation, match=r"already registered as m:3 .* these files hash to") as err:
        mirror(registry, "m", staged, Lineage("r"))
    assert err.value.exit_code == 5
