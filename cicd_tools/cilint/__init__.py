"""``cicd-tools ci lint``: a team's own Azure DevOps / GitHub Actions YAML checked for this flow's pitfalls.

Rules (each finding names the file, the line and the fix):
CI001 a consumed code version read from the build/run id instead of the registration step's output;
CI002 a firewall close step that does not run on failure and cancellation (``always()``);
CI003 an output read under a step/job/name that nothing earlier sets;
CI004 a service connection given by a runtime variable (resolved before variables exist);
CI005 OIDC login without ``id-token: write``;
CI006 a ``cicd-tools`` invocation the real parser refuses (unknown command or flag);
CI007 ``pip install .`` installing the team's own project instead of cicd-tools.
"""

from __future__ import annotations

from cicd_tools.cilint.findings import Finding
from cicd_tools.cilint.lint import lint_files

__all__ = ["Finding", "lint_files"]
