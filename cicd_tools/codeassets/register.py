"""Register Azure ML code assets and capture the version the SDK actually returned.

``MLClient._code.create_or_update`` dedups by content hash: unchanged code requested as version 42
comes back as the existing version 7 and nothing is uploaded. The hash lookup matches regardless of
name and the SDK reads name AND version of the first hit (AZURE_FACTS.md §1), so ``validation-code``
with ``training-code``'s content comes back as ``training-code:5``. ``result.name`` and
``result.version`` are the only truth: a returned name other than the requested one is a contract
violation (nothing is published or output under the requested name), and everything downstream (CI
outputs, the pointer) uses the returned version, never the requested one.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cicd_tools.codeassets.hashing import HASH_VERSION, collect_code_files, hash_code_files
from cicd_tools.codeassets.names import validate_asset_name
from cicd_tools.codeassets.staging import markers_for, staged_copy
from cicd_tools.codeassets.workspace import CodeVersionInfo
from cicd_tools.support.errors import CicdError, ContractViolation, ExitCode, UsageError

log = logging.getLogger(__name__)

# Azure ML accepts more, but a version also lands in blob names, job ids and CI variables: keep it plain.
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class AssetSpec:
    """One code asset to register: its name and its local folder."""

    name: str
    path: Path


@dataclass(frozen=True)
class RegistrationResult:
    """One registration: what was requested, what the SDK returned, and how they relate."""

    name: str  # the requested name (equal to returned_name, or the registration failed: AssetNameMismatch)
    requested_version: str
    version: str  # what the SDK returned: the only version anything downstream may use
    asset_id: str  # full ARM id of the returned version
    content_hash: str
    file_count: int
    dedup: bool  # the SDK returned an existing version (nothing was uploaded)
    unique: bool  # registered from a staged copy with a version marker
    code_uri: str | None
    warnings: tuple[str, ...] = ()
    returned_name: str = ""  # the name the SDK returned (hash dedup may cross names); "" means ``name``
    name_marker: bool = False  # registered from a staged copy with a name marker

    def __post_init__(self) -> None:
        if not self.returned_name:
            object.__setattr__(self, "returned_name", self.name)

    @property
    def older_than_requested(self) -> bool:
        return self.version != self.requested_version

    @property
    def name_mismatch(self) -> bool:
        """The SDK returned another asset's name: the content is registered under that name already."""
        return self.returned_name != self.name


class AssetNameMismatch(ContractViolation):
    """Azure ML returned an asset of another name than the one requested (content-hash dedup across names)."""

    default_hint = (
        "Register with --name-marker (a marker file naming the asset keeps dedup within each name), or "
        "--unique (a new version every run); `cicd-tools code plan` shows this before anything is uploaded."
    )

    def __init__(self, result: RegistrationResult) -> None:
        super().__init__(
            f"requested {result.name}:{result.requested_version} but Azure ML returned {result.returned_name}:"
            f"{result.version} ({result.asset_id}): this content is already registered under "
            f"{result.returned_name!r} and the SDK's hash lookup matches regardless of name; nothing was "
            f"published or output for {result.name!r}",
            code="AssetNameMismatch",
        )
        self.result = result


@dataclass(frozen=True)
class AssetOutcome:
    """The result of one asset of a batch: a registration or the error that stopped it, and the pointer."""

    spec: AssetSpec
    result: RegistrationResult | None = None
    error: CicdError | None = None
    pointer: Any = None  # pointer.PublishResult when --pointer published it
    pointer_error: CicdError | None = None

    @property
    def exit_code(self) -> int:
        worst = 0
        for err in (self.error, self.pointer_error):
            if err is not None:
                worst = max(worst, int(err.exit_code))
        return worst


def parse_asset_arg(value: str) -> AssetSpec:
    """``name=path`` (the ``--asset`` flag). Raises: UsageError."""
    name, sep, path = value.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise UsageError(f"--asset takes NAME=PATH, got {value!r}", hint="e.g. --asset training-code=src/train")
    return AssetSpec(validate_name(name.strip()), Path(path.strip()))


def validate_name(name: str) -> str:
    """Raises: UsageError when Azure ML would refuse the name."""
    return validate_asset_name(name)


def validate_version(version: str) -> str:
    """Raises: UsageError for a version that is empty or would not survive blob names and CI variables."""
    if not _VERSION_RE.match(version):
        raise UsageError(
            f"invalid version {version!r}: 1-100 characters of letters, digits, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return version


def default_version(environ: Mapping[str, str] | None = None) -> str | None:
    """The version to request by default: the CI build id (see ``ci.build_id``)."""
    from cicd_tools.ci import build_id

    return build_id(environ)


def resolve_requested_version(explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """``--version``, else the CI build id. Raises: UsageError when neither exists."""
    version = explicit or default_version(environ)
    if not version:
        raise UsageError(
            "no version to request: pass --version, or run in CI (BUILD_BUILDID or GITHUB_RUN_ID is read)",
            hint="Azure ML has no auto-increment for code assets; the build id makes a good version.",
        )
    return validate_version(version)


def find_repo_root(code_path: Path, environ: Mapping[str, str] | None = None) -> Path:
    """The repository boundary for ``code_path``: the CI checkout folder, else the nearest ancestor of the
    path (as written, symlinks not resolved) holding ``.git``, else the code folder itself."""
    env = os.environ if environ is None else environ
    for var in ("BUILD_SOURCESDIRECTORY", "GITHUB_WORKSPACE"):
        if env.get(var):
            return Path(env[var])
    here = Path(os.path.abspath(code_path))
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here if here.is_dir() else here.parent


@dataclass
class Registrar:
    """Registers assets through an SDK client; ``lookup`` (a WorkspaceCodes) tells dedup apart."""

    client: Any  # MLClient
    lookup: Any | None = None  # WorkspaceCodes; None: dedup is inferred from the version alone
    repo_root: Path | None = None
    create: Callable[[Any, str, str, Path], Any] | None = None  # injectable for tests (sdk.create_code)

    def register(
        self, spec: AssetSpec, requested_version: str, *, unique: bool = False, name_marker: bool = False
    ) -> RegistrationResult:
        """Register one asset.

        Raises: AssetNameMismatch (exit 5, carrying the result) when the SDK returned another name;
        CicdError (classified) for every other failure.
        """
        from cicd_tools.codeassets import sdk

        create = self.create or sdk.create_code
        files = collect_code_files(spec.path, repo_root=self.repo_root)
        markers = markers_for(asset_name=spec.name if name_marker else None,
                              requested_version=requested_version if unique else None)
        with ExitStack() as stack:
            if markers:
                staged = stack.enter_context(staged_copy(files, markers))
                digest, upload_path = staged.content_hash, staged.path
            else:
                digest, upload_path = hash_code_files(files), files.root
            warnings: list[str] = []
            existing = self._existing(spec.name, digest.sha256, warnings)
            log.info("registering %s:%s from %s (%d files, hash %s)", spec.name, requested_version,
                     spec.path, digest.file_count, digest.sha256[:12])
            from cicd_tools.storage.denied import retry_while_denied

            # Right after `firewall open` the rule can still flap: a 403 AuthorizationFailure is retried briefly.
            returned = retry_while_denied(
                lambda: create(self.client, spec.name, requested_version, upload_path),
                f"registering {spec.name}:{requested_version}",
            )
        version = str(returned.version)
        dedup = (version != requested_version or returned.name != spec.name
                 or (existing is not None and (existing.name, existing.version) == (returned.name, version)))
        if returned.hash_sha256 and returned.hash_sha256 != digest.sha256:
            # The SDK hashed other bytes than we did (a file changed in between, or a hash rule drifted).
            warnings.append(
                f"the workspace records hash {returned.hash_sha256[:12]}… for {spec.name}:{version}, "
                f"cicd-tools computed {digest.sha256[:12]}… (hashVersion {HASH_VERSION})"
            )
        if version != requested_version and returned.name == spec.name:
            warnings.append(
                f"requested {spec.name}:{requested_version} but the content is already registered as "
                f"version {version}: Azure ML returned that version and uploaded nothing"
            )
        result = RegistrationResult(
            name=spec.name,
            returned_name=returned.name,
            requested_version=requested_version,
            version=version,
            asset_id=returned.id,
            content_hash=returned.hash_sha256 or digest.sha256,
            file_count=digest.file_count,
            dedup=dedup,
            unique=unique,
            name_marker=name_marker,
            code_uri=returned.path,
            warnings=tuple(warnings),
        )
        if result.name_mismatch:
            raise AssetNameMismatch(result)
        return result

    def _existing(self, name: str, sha256: str, warnings: list[str]) -> CodeVersionInfo | None:
        if self.lookup is None:
            return None
        try:
            hits = self.lookup.find_by_hash(name, sha256)
        except CicdError as err:
            # The SDK makes the same lookup and will fail loudly if it is a real problem.
            log.debug("pre-registration hash lookup failed: %s", err)
            return None
        return hits[0] if hits else None


CANCEL_GRACE = 1.0  # seconds a cancelled register_many waits for registrations about to answer (exit within 2 s)


def register_many(
    registrar_for: Callable[[AssetSpec], Registrar],
    specs: Sequence[AssetSpec],
    requested_version: str,
    *,
    unique: bool = False,
    name_marker: bool = False,
    after: Callable[[AssetOutcome], AssetOutcome] | None = None,
    max_workers: int = 4,
    on_done: Callable[[AssetOutcome], None] | None = None,
) -> list[AssetOutcome]:
    """Register ``specs`` concurrently (one thread and one client each); every asset gets an outcome.

    ``after`` runs per successful registration in its thread (e.g. publishing the pointer); whatever it
    raises is kept as the outcome's ``pointer_error`` beside the registration result, never instead of it.
    A failure never hides the others' results; outcomes keep the order of ``specs``. ``on_done`` hears each
    outcome in its thread the moment it is known (evidence first, also while the caller is being cancelled).
    """
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"asset names must be unique in one call: {', '.join(duplicates)}")
    # Clients are built here, in order, before any thread starts: MLClient's set-up touches process globals.
    registrars = [(spec, _registrar_or_error(registrar_for, spec)) for spec in specs]

    def run(item: tuple[AssetSpec, Registrar | CicdError]) -> AssetOutcome:
        outcome = _run(item)
        if on_done is not None:
            try:
                on_done(outcome)
            except Exception as exc:  # recording must never lose the registration itself
                log.error("recording the outcome of %s failed: %s: %s", outcome.spec.name, type(exc).__name__, exc)
        return outcome

    def _run(item: tuple[AssetSpec, Registrar | CicdError]) -> AssetOutcome:
        spec, registrar = item
        if isinstance(registrar, CicdError):
            return AssetOutcome(spec, error=registrar)
        try:
            result = registrar.register(spec, requested_version, unique=unique, name_marker=name_marker)
        except AssetNameMismatch as err:
            return AssetOutcome(spec, result=err.result, error=err)  # the evidence, not published
        except CicdError as err:
            return AssetOutcome(spec, error=err)
        except Exception as exc:
            from cicd_tools.codeassets.sdk import translate_sdk_error

            return AssetOutcome(spec, error=translate_sdk_error(exc, name=spec.name, version=requested_version))
        outcome = AssetOutcome(spec, result=result)
        if after is None:
            return outcome
        try:
            return after(outcome)
        except Exception as exc:  # the registration happened: keep it, whatever the later step raised
            return AssetOutcome(spec, result=result, pointer_error=later_step_error(exc))

    if len(registrars) == 1:
        return [run(registrars[0])]
    # Daemon threads, not a ThreadPoolExecutor: on SIGTERM/SIGINT the caller must not wait for every upload to end
    # (an executor's shutdown joins its workers: 7.8 s measured). Uploads that finish within CANCEL_GRACE are still
    # recorded through ``on_done``; the rest are abandoned with the process.
    # The wait is on events, not Thread.join: a join that a signal interrupts marks the thread as stopped
    # (CPython 3.11's bpo-45274 handling), so the grace below would not wait at all and a registration that
    # Azure ML answers a moment later would be lost to the report.
    outcomes: list[AssetOutcome | None] = [None] * len(registrars)
    finished = [threading.Event() for _ in registrars]
    slots = threading.BoundedSemaphore(max(1, min(max_workers, len(registrars))))

    def worker(index: int, item: tuple[AssetSpec, Registrar | CicdError]) -> None:
        try:
            with slots:
                outcomes[index] = run(item)
        finally:
            finished[index].set()

    threads = [threading.Thread(target=worker, args=(i, item), name=f"code-register-{i}", daemon=True)
               for i, item in enumerate(registrars)]
    for thread in threads:
        thread.start()
    try:
        for event in finished:
            event.wait()
    except BaseException:  # Interrupted, KeyboardInterrupt: a short grace for registrations about to answer
        deadline = time.monotonic() + CANCEL_GRACE
        for event in finished:
            event.wait(max(0.0, deadline - time.monotonic()))
        raise
    return [outcome if outcome is not None else AssetOutcome(spec, error=CicdError("no outcome recorded"))
            for outcome, (spec, _) in zip(outcomes, registrars, strict=True)]


def later_step_error(exc: BaseException) -> CicdError:
    """A CicdError for what a step after the registration raised (an Azure error is classified)."""
    if isinstance(exc, CicdError):
        return exc
    if type(exc).__module__.startswith("azure."):
        from cicd_tools.support.azerrors import classify_azure_error

        return classify_azure_error(exc, what="publishing the pointer")
    first = str(exc).splitlines()[0] if str(exc) else ""
    return CicdError(f"publishing the pointer failed: {type(exc).__name__}: {first}", code=type(exc).__name__)


def _registrar_or_error(factory: Callable[[AssetSpec], Registrar], spec: AssetSpec) -> Registrar | CicdError:
    try:
        return factory(spec)
    except CicdError as err:
        return err


def worst_exit_code(outcomes: Sequence[AssetOutcome]) -> int:
    """The most severe exit code of a batch (0 when everything succeeded)."""
    codes = [o.exit_code for o in outcomes if o.exit_code]
    if not codes:
        return int(ExitCode.OK)
    return max(codes)
