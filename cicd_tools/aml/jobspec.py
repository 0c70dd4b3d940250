"""What a Command job may say: input/output types and the delivery modes each allows (REST and YAML names).

Shared by the sandbox's job provider (which refuses like the service) and ``aml lint-job`` (which warns
before submission), so the two never disagree. Source: AZURE_FACTS.md §6 and the 2025-09-01 spec.
"""

from __future__ import annotations

# REST jobInputType -> the modes it allows (literals take none).
INPUT_MODES: dict[str, tuple[str, ...]] = {
    "uri_file": ("ReadOnlyMount", "ReadWriteMount", "Download", "Direct", "EvalMount", "EvalDownload"),
    "uri_folder": ("ReadOnlyMount", "ReadWriteMount", "Download", "Direct", "EvalMount", "EvalDownload"),
    "mltable": ("ReadOnlyMount", "Download", "Direct", "EvalMount", "EvalDownload"),
    "custom_model": ("ReadOnlyMount", "Download", "Direct"),
    "mlflow_model": ("ReadOnlyMount", "Download", "Direct"),
    "triton_model": ("ReadOnlyMount", "Download", "Direct"),
}
OUTPUT_TYPES = ("uri_file", "uri_folder", "mltable", "custom_model", "mlflow_model", "triton_model")
OUTPUT_MODES = ("ReadWriteMount", "Upload", "Direct")
# Pipeline-job syntax that a Command job refuses ("The value 'string' of input type is not valid for Command job").
TYPED_LITERALS = ("string", "integer", "number", "boolean")
# YAML / SDK mode names -> REST names.
YAML_MODES: dict[str, str] = {
    "ro_mount": "ReadOnlyMount", "rw_mount": "ReadWriteMount", "download": "Download", "direct": "Direct",
    "eval_mount": "EvalMount", "eval_download": "EvalDownload", "upload": "Upload",
}
REST_TO_YAML_MODE = {v: k for k, v in YAML_MODES.items()}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".pkl", ".joblib", ".h5", ".onnx", ".json")
