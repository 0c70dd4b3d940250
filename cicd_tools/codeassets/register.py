"""Register Azure ML code assets and capture the version the SDK actually returned.

``MLClient._code.create_or_update`` dedups by name + content hash: unchanged code requested as
version 42 comes back as the existing version 7 and nothing is uploaded. ``result.version`` is the
only truth; everything downstream (CI outputs, the pointer) uses it, never the requested version.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cicd_tools.codeassets.hashing import HASH_VERSION, collect_code_files, hash_code_files
from cicd_tools.codeassets.staging import staged_unique
from cicd_tools.codeassets.workspace import CodeVersionInfo
from cicd_tools.errors import CicdError, ExitCode, UsageError

log = logging.getLogger(__name__)

# Azure ML accepts more, but a version also lands in blob names, job ids and CI variables: keep it plain.
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$")  # CodeVersions_CreateOrUpdate's pattern


@dataclass(frozen=True)
class AssetSpec:
    """One code asset to register: its name and its local folder."""

    name: str
    path: Path


@dataclass(frozen=True)
class RegistrationResult:
    """One registration: what was requested, what the SDK returned, and how they relate."""

    name: str
    requested_version: str
    version: str  # what the SDK returned: the only version anything downstream may use
    asset_id: str  # full ARM id of the returned version
    content_hash: str
    file_count: int
    dedup: bool  # the SDK returned an existing version (nothing was uploaded)
    unique: bool  # registered from a staged copy with a version marker
    code_uri: str | None
    warnings: tuple[str, ...] = ()

    @property
    def older_than_requested(self) -> bool:
        return self.version != self.requested_version


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
    if not _NAME_RE.match(name):
        raise UsageError(
            f"invalid code asset name {name!r}: letters, digits, '-' and '_' only, starting with a letter or digit"
        )
    return name


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

    def register(self, spec: AssetSpec, requested_version: str, *, unique: bool = False) -> RegistrationResult:
        """Register one asset. Raises: CicdError (classified) for every failure."""
        from cicd_tools.codeassets import sdk

        create = self.create or sdk.create_code
        files = collect_code_files(spec.path, repo_root=self.repo_root)
        with ExitStack() as stack:
            if unique:
                staged = stack.enter_context(staged_unique(files, requested_version))
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
        dedup = version != requested_version or (existing is not None and existing.version == version)
        if returned.hash_sha256 and returned.hash_sha256 != digest.sha256:
            # The SDK hashed other bytes than we did (a file changed in between, or a hash rule drifted).
            warnings.append(
                f"the workspace records hash {returned.hash_sha256[:12]}… for {spec.name}:{version}, "
                f"cicd-tools computed {digest.sha256[:12]}… (hashVersion {HASH_VERSION})"
            )
        if returned.name != spec.name:
            warnings.append(f"the SDK returned asset {returned.name!r} for requested name {spec.name!r}")
        if version != requested_version:
            warnings.append(
                f"requested {spec.name}:{requested_version} but the content is already registered as "
                f"version {version}: Azure ML returned that version and uploaded nothing"
            )
        return RegistrationResult(
            name=returned.name,
            requested_version=requested_version,
            version=version,
            asset_id=returned.id,
            content_hash=returned.hash_sha256 or digest.sha256,
            file_count=digest.file_count,
            dedup=dedup,
            unique=unique,
            code_uri=returned.path,
            warnings=tuple(warnings),
        )

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


def register_many(
    registrar_for: Callable[[AssetSpec], Registrar],
    specs: Sequence[AssetSpec],
    requested_version: str,
    *,
    unique: bool = False,
    after: Callable[[AssetOutcome], AssetOutcome] | None = None,
    max_workers: int = 4,
) -> list[AssetOutcome]:
    """Register ``specs`` concurrently (one thread and one client each); every asset gets an outcome.

    ``after`` runs per successful registration in its thread (e.g. publishing the pointer). A failure
    never hides the others' results; outcomes keep the order of ``specs``.
    """
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"asset names must be unique in one call: {', '.join(duplicates)}")
    # Clients are built here, in order, before any thread starts: MLClient's set-up touches process globals.
    registrars = [(spec, _registrar_or_error(registrar_for, spec)) for spec in specs]

    def run(item: tuple[AssetSpec, Registrar | CicdError]) -> AssetOutcome:
        spec, registrar = item
        if isinstance(registrar, CicdError):
            return AssetOutcome(spec, error=registrar)
        try:
            outcome = AssetOutcome(spec, result=registrar.register(spec, requested_version, unique=unique))
        except CicdError as err:
            return AssetOutcome(spec, error=err)
        except Exception as exc:
            from cicd_tools.codeassets.sdk import translate_sdk_error

            return AssetOutcome(spec, error=translate_sdk_error(exc, name=spec.name, version=requested_version))
        return after(outcome) if after is not None else outcome

    if len(registrars) == 1:
        return [run(registrars[0])]
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(registrars))),
                            thread_name_prefix="code-register") as pool:
        return list(pool.map(run, registrars))


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
