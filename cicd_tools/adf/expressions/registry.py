"""Every function the ADF expression language has, by lower-case name (names are case-insensitive)."""

from __future__ import annotations

from cicd_tools.adf.expressions.context import CONTEXT_FUNCTIONS
from cicd_tools.adf.expressions.convert import CONVERSION_FUNCTIONS, UNSUPPORTED_LOCALLY
from cicd_tools.adf.expressions.dates import DATE_FUNCTIONS
from cicd_tools.adf.expressions.functions import BASIC_FUNCTIONS
from cicd_tools.adf.expressions.types import FunctionSpec

FUNCTIONS: dict[str, FunctionSpec] = {
    **BASIC_FUNCTIONS,
    **CONVERSION_FUNCTIONS,
    **DATE_FUNCTIONS,
    **CONTEXT_FUNCTIONS,
}

# Valid in ADF but evaluating them raises: the local evaluator does not model them.
NOT_EVALUATED_LOCALLY: frozenset[str] = UNSUPPORTED_LOCALLY | {"dataset", "linkedservice"}
