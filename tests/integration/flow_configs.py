"""The `flow` configurations the integration tests write into a throwaway repository (one place, not one per test)."""

from __future__ import annotations

# The first half only (no factory): asset names are formatted in, so parallel tests never share versions.
FIRST_HALF = """
[azure]
resource-group = "rg-mlops-sandbox"
workspace = "mlw-sandbox"

[storage]
account = "mlopssandboxsa"

[firewall]
timeout = "60"

[[code.assets]]
name = "{train}"
path = "src/train"

[[code.assets]]
name = "{validate}"
path = "src/validate"

[adf]
enabled = false

[verify]
enabled = false

[report]
path = "out/evidence.json"
"""

_WHOLE_CHAIN = """
[azure]
resource-group = "rg-mlops-sandbox"
workspace = "mlw-sandbox"
factory = "adf-sandbox"

[storage]
account = "mlopssandboxsa"

[firewall]
timeout = "60"

[[code.assets]]
name = "training-code"
path = "aml/src/train"

[[code.assets]]
name = "validation-code"
path = "aml/src/validate"

[adf]
timeout = "{timeout}"

[[adf.pipelines]]
name = "pl_train_and_validate"
parameters = {{ runTag = "{tag}", pollSeconds = {poll} }}

[report]
path = "out/evidence.json"
"""

MIRROR = '\n[mirror]\nenabled = true\nname = "linear-model"\n'


def whole_chain(tag: str, *, timeout: str = "10m", poll: int = 1, mirror: bool = False) -> str:
    """The shipped factory's pl_train_and_validate with the shipped code assets (``tag`` names the run's jobs)."""
    return _WHOLE_CHAIN.format(tag=tag, timeout=timeout, poll=poll) + (MIRROR if mirror else "")
