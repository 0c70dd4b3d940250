"""ADF linter: every rule (positive and negative), the loader's odd inputs, the corpus, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cicd_tools.adf import jsonpos
from cicd_tools.adf.armnames import readable_resource_name
from cicd_tools.adf.lint import RULES, Finding, lint_paths
from cicd_tools.adf.loader import load_file
from cicd_tools.cli import main as cli

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "adf-pipelines"

# Every finding on the corpus, reviewed by hand (each one is a true positive):
# - Multiple Waits: 'Wait 4' depends on 'If Condition1'; the activity is called 'If Condition'.
# - DataverseToSQL_Orchestrator: policy timeout '0.0:10:00' has a one-digit hour (info only).
# - FHIR-to-FHIR, Sensitive Data Discovery, 1_land_insights: SetVariable inside a ForEach without
#   isSequential (parallel), which Microsoft documents as unsafe (variables are pipeline-wide).
# - Data Masking, Sensitive Data Discovery, 04-Infant: pipeline().parameters.X spelled with another case
#   than declared (ADF resolves it, so info only).
# - 04-Infant: retryIntervalInSeconds 5, below ADF's minimum of 30.
EXPECTED: dict[str, list[str]] = {
    "Azure-Player__azure.datafactory.tools__test__BigFactorySample2__pipeline__Multiple Waits.json": ["ADF050"],
    "Azure__Azure-DataFactory__templates__Copy Dataverse data into Azure SQL__DataverseToSQL_Orchestrator.json": [
        "ADF074"
    ],
    "Azure__Azure-DataFactory__templates__Copy data from Azure FHIR service to Azure FHIR service__Copy data"
    " from Azure FHIR service to Azure FHIR service.json": ["ADF062"],
    "Azure__Azure-DataFactory__templates__Data Masking with Delphix - Legacy__Data Masking with Delphix -"
    " Legacy.json": ["ADF042"],
    "Azure__Azure-DataFactory__templates__Sensitive Data Discovery with Delphix - Legacy__Sensitive Data"
    " Discovery with Delphix - Legacy.json": ["ADF042"] + ["ADF062"] * 9,
    "microsoft__OpenEduAnalytics__modules__module_catalog__Microsoft_Education_Insights__pipeline__"
    "1_land_insights_prod_data.json": ["ADF062"],
    "mrpaulandrew__procfwk__DataFactory__pipeline__04-Infant.json": ["ADF042"] * 12 + ["ADF071"] * 5,
}


# --- helpers ----------------------------------------------------------------------------------------


def activity(
    name: str, kind: str = "Wait", depends: list[tuple[str, list[str]]] | None = None, **type_properties: Any
) -> dict[str, Any]:
    if kind == "Wait" and not type_properties:
        type_properties = {"waitTimeInSeconds": 1}
    return {
        "name": name,
        "type": kind,
        "dependsOn": [{"activity": a, "dependencyConditions": c} for a, c in (depends or [])],
        "userProperties": [],
        "typeProperties": type_properties,
    }


def pipeline(
    *activities: dict[str, Any],
    parameters: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
    name: str = "pl",
) -> dict[str, Any]:
    props: dict[str, Any] = {"activities": list(activities)}
    if parameters is not None:
        props["parameters"] = parameters
    if variables is not None:
        props["variables"] = variables
    return {"name": name, "properties": props}


def lint_doc(tmp_path: Path, doc: Any, name: str = "pl.json") -> list[Finding]:
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return list(lint_paths([path]).findings)


def rules_of(findings: list[Finding]) -> list[str]:
    return sorted(f.rule for f in findings)


def web(name: str = "Call", **extra: Any) -> dict[str, Any]:
    return activity(name, "WebActivity", url="https://example.org/x", method="GET", **extra)


def make_factory(
    root: Path,
    *pipelines: dict[str, Any],
    global_parameters: dict[str, Any] | None = None,
    runtimes: tuple[str, ...] = (),
) -> Path:
    (root / "pipeline").mkdir(parents=True)
    for doc in pipelines:
        (root / "pipeline" / f"{doc['name']}.json").write_text(json.dumps(doc), encoding="utf-8")
    (root / "factory").mkdir()
    factory = {"name": "f", "properties": {"globalParameters": global_parameters or {}}}
    (root / "factory" / "f.json").write_text(json.dumps(factory), encoding="utf-8")
    if runtimes:
        (root / "integrationRuntime").mkdir()
        for rt in runtimes:
            (root / "integrationRuntime" / f"{rt}.json").write_text(json.dumps({"name": rt}), encoding="utf-8")
    return root


# --- corpus -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        pytest.skip(f"the ADF corpus is not present at {CORPUS}")
    return sorted(CORPUS.glob("*.json"))


def test_corpus_lints_without_crashing_and_findings_match_the_reviewed_list(corpus_files: list[Path]) -> None:
    found = {}
    for path in corpus_files:
        rules = rules_of(list(lint_paths([path]).findings))
        if rules:
            found[path.name] = rules
    assert found == {name: sorted(rules) for name, rules in EXPECTED.items()}


def test_corpus_reads_every_pipeline_of_every_file(corpus_files: list[Path]) -> None:
    report = lint_paths([CORPUS])
    assert report.files == len(corpus_files)
    assert report.pipelines == 79  # ARM templates hold several pipelines each
    assert not [f for f in report.findings if f.rule in {"ADF000", "ADF001"}]


def test_corpus_pipeline_with_connect_via_moved_to_the_root_is_flagged(
    tmp_path: Path, corpus_files: list[Path]
) -> None:
    source = CORPUS / "furmangg__automating-azure-analysis-services__ADFv2__ProcessAzureAS MSI.json"
    if source not in corpus_files:
        pytest.skip("corpus file with connectVia in typeProperties is absent")
    doc = json.loads(source.read_text(encoding="utf-8"))
    moved = 0

    def move(acts: list[dict[str, Any]]) -> None:
        nonlocal moved
        for act in acts:
            tp = act.get("typeProperties", {})
            if "connectVia" in tp:
                act["connectVia"] = tp.pop("connectVia")
                moved += 1
            for key in ("activities", "ifTrueActivities", "ifFalseActivities"):
                move(tp.get(key, []))

    assert not [f for f in lint_doc(tmp_path, doc, "before.json") if f.rule == "ADF010"]
    move(doc["properties"]["activities"])
    assert moved == 1
    flagged = [f for f in lint_doc(tmp_path, doc, "after.json") if f.rule == "ADF010"]
    assert [f.activity for f in flagged] == ["GetAzureASRefreshes"]


# --- connectVia, authentication, WebActivity ----------------------------------------------------------


def test_root_level_connect_via_is_an_error_at_the_line_of_the_key(tmp_path: Path) -> None:
    act = web()
    act["connectVia"] = {"referenceName": "ManagedVnetIR", "type": "IntegrationRuntimeReference"}
    findings = lint_doc(tmp_path, pipeline(act))
    [finding] = [f for f in findings if f.rule == "ADF010"]
    assert finding.severity == "error"
    assert finding.path == "$.properties.activities[0].connectVia"
    lines = (tmp_path / "pl.json").read_text(encoding="utf-8").splitlines()
    assert finding.line is not None and '"connectVia"' in lines[finding.line - 1]
    assert "typeProperties" in finding.fix and "public network" in finding.message


def test_connect_via_inside_type_properties_is_clean(tmp_path: Path) -> None:
    act = web(connectVia={"referenceName": "ManagedVnetIR", "type": "IntegrationRuntimeReference"})
    assert lint_doc(tmp_path, pipeline(act)) == []


def test_connect_via_to_a_runtime_the_factory_lacks_is_an_error(tmp_path: Path) -> None:
    ok = web("Ok", connectVia={"referenceName": "ManagedVnetIR", "type": "IntegrationRuntimeReference"})
    bad = web("Bad", connectVia={"referenceName": "Typo", "type": "IntegrationRuntimeReference"})
    root = make_factory(tmp_path / "adf", pipeline(ok, bad), runtimes=("ManagedVnetIR",))
    findings = list(lint_paths([root]).findings)
    assert [(f.rule, f.activity) for f in findings] == [("ADF011", "Bad")]


@pytest.mark.parametrize("kind", ["MSI", "SystemAssignedManagedIdentity", "UserAssignedManagedIdentity"])
def test_managed_identity_without_resource_is_an_error(tmp_path: Path, kind: str) -> None:
    findings = lint_doc(tmp_path, pipeline(web(authentication={"type": kind})))
    assert rules_of(findings) == ["ADF020"]


def test_managed_identity_with_resource_or_expression_resource_is_clean(tmp_path: Path) -> None:
    a = web("A", authentication={"type": "MSI", "resource": "https://storage.azure.com/"})
    b = web(
        "B", authentication={"type": "MSI", "resource": {"value": "@pipeline().parameters.r", "type": "Expression"}}
    )
    assert lint_doc(tmp_path, pipeline(a, b, parameters={"r": {"type": "String"}})) == []


def test_web_activity_without_url_is_an_error(tmp_path: Path) -> None:
    assert rules_of(lint_doc(tmp_path, pipeline(activity("W", "WebActivity", method="GET")))) == ["ADF021"]


def test_http_request_timeout_above_ten_minutes_is_a_warning(tmp_path: Path) -> None:
    findings = lint_doc(
        tmp_path, pipeline(web("A", httpRequestTimeout="00:15:00"), web("B", httpRequestTimeout="00:10:00"))
    )
    assert [(f.rule, f.severity, f.activity) for f in findings] == [("ADF072", "warning", "A")]


# --- expressions and references ---------------------------------------------------------------------


def test_expression_that_does_not_parse_is_an_error_with_its_position(tmp_path: Path) -> None:
    act = activity("S", "SetVariable", variableName="v", value="@concat('a', ")
    [finding] = lint_doc(tmp_path, pipeline(act, variables={"v": {"type": "String"}}))
    assert finding.rule == "ADF030" and finding.severity == "error"
    assert "position" in finding.message
    assert finding.path == "$.properties.activities[0].typeProperties.value"


def test_unknown_function_is_an_error(tmp_path: Path) -> None:
    act = activity("S", "SetVariable", variableName="v", value="@frobnicate('a')")
    findings = lint_doc(tmp_path, pipeline(act, variables={"v": {"type": "String"}}))
    assert rules_of(findings) == ["ADF031"] and "frobnicate" in findings[0].message


def test_reference_to_missing_activity_is_an_error(tmp_path: Path) -> None:
    act = activity("S", "SetVariable", variableName="v", value="@activity('Nope').output.x")
    assert rules_of(lint_doc(tmp_path, pipeline(act, variables={"v": {"type": "String"}}))) == ["ADF040"]


def test_reference_to_activity_that_is_not_upstream_is_an_error(tmp_path: Path) -> None:
    a = web("A")
    s = activity("S", "SetVariable", variableName="v", value="@activity('A').output.x")  # no dependsOn
    findings = lint_doc(tmp_path, pipeline(a, s, variables={"v": {"type": "String"}}))
    assert [(f.rule, f.severity) for f in findings] == [("ADF041", "error")]


def test_references_to_transitive_and_container_upstream_activities_are_clean(tmp_path: Path) -> None:
    a = web("A")
    b = activity("B", depends=[("A", ["Succeeded"])])
    inner = activity("Inner", "SetVariable", variableName="v", value="@activity('A').output.x")
    cond = activity(
        "If",
        "IfCondition",
        depends=[("B", ["Completed"])],
        expression={"value": "@equals(activity('A').output.x, 1)", "type": "Expression"},
        ifTrueActivities=[inner],
    )
    assert lint_doc(tmp_path, pipeline(a, b, cond, variables={"v": {"type": "String"}})) == []


def test_until_expression_and_downstream_activities_may_read_the_until_inner_activities(tmp_path: Path) -> None:
    check = web("Check")
    until = activity(
        "Poll",
        "Until",
        activities=[check],
        expression={"value": "@equals(activity('Check').output.status, 'Done')", "type": "Expression"},
    )
    after = activity(
        "After",
        "SetVariable",
        depends=[("Poll", ["Succeeded"])],
        variableName="v",
        value="@activity('Check').output.status",
    )
    assert lint_doc(tmp_path, pipeline(until, after, variables={"v": {"type": "String"}})) == []


def test_container_expression_may_not_read_its_own_inner_activities(tmp_path: Path) -> None:
    cond = activity(
        "If", "IfCondition", expression="@equals(activity('Inner').output.x, 1)", ifTrueActivities=[web("Inner")]
    )
    assert rules_of(lint_doc(tmp_path, pipeline(cond))) == ["ADF041"]


def test_undeclared_parameter_is_an_error_and_a_case_slip_is_info(tmp_path: Path) -> None:
    a = activity("A", "SetVariable", variableName="v", value="@pipeline().parameters.missing")
    b = activity("B", "SetVariable", variableName="v", value="@pipeline().parameters.RunDate")
    c = activity("C", "SetVariable", variableName="v", value="@pipeline().parameters.runDate")
    findings = lint_doc(
        tmp_path, pipeline(a, b, c, parameters={"runDate": {"type": "String"}}, variables={"v": {"type": "String"}})
    )
    assert [(f.rule, f.severity, f.activity) for f in findings] == [("ADF042", "error", "A"), ("ADF042", "info", "B")]


def test_parameters_given_by_an_arm_expression_are_not_checked(tmp_path: Path) -> None:
    act = activity("A", "SetVariable", variableName="v", value="@pipeline().parameters.anything")
    doc = pipeline(act, variables={"v": {"type": "String"}})
    doc["properties"]["parameters"] = "[parameters('pipeline_parameter')]"
    assert lint_doc(tmp_path, doc) == []


def test_unknown_global_parameter_is_an_error_only_when_the_factory_is_known(tmp_path: Path) -> None:
    act = activity("A", "SetVariable", variableName="v", value="@pipeline().globalParameters.nope")
    doc = pipeline(act, variables={"v": {"type": "String"}})
    assert lint_doc(tmp_path, doc) == []  # a single file: the factory's globals are unknown
    root = make_factory(tmp_path / "adf", doc, global_parameters={"env": {"type": "String", "value": "dev"}})
    assert rules_of(list(lint_paths([root]).findings)) == ["ADF043"]


def test_undeclared_variable_in_expression_is_an_error(tmp_path: Path) -> None:
    act = activity("A", "SetVariable", variableName="v", value="@variables('ghost')")
    assert rules_of(lint_doc(tmp_path, pipeline(act, variables={"v": {"type": "String"}}))) == ["ADF044"]


def test_item_outside_foreach_is_an_error_but_fine_in_foreach_and_filter(tmp_path: Path) -> None:
    outside = activity("Out", "SetVariable", variableName="v", value="@item().name")
    inside = activity("In", "AppendVariable", variableName="a", value="@item().name")
    loop = activity("Loop", "ForEach", items="@createArray(1)", isSequential=True, activities=[inside])
    filt = activity("Filter", "Filter", items="@createArray(1)", condition="@greater(item(), 0)")
    findings = lint_doc(
        tmp_path, pipeline(outside, loop, filt, variables={"v": {"type": "String"}, "a": {"type": "Array"}})
    )
    assert [(f.rule, f.activity) for f in findings] == [("ADF045", "Out")]


def test_unknown_pipeline_system_variable_is_a_warning(tmp_path: Path) -> None:
    a = activity("A", "SetVariable", variableName="v", value="@pipeline().RunID")  # case does not matter
    b = activity("B", "SetVariable", variableName="v", value="@pipeline().TriggerStartTime")
    findings = lint_doc(tmp_path, pipeline(a, b, variables={"v": {"type": "String"}}))
    assert [(f.rule, f.severity, f.activity) for f in findings] == [("ADF046", "warning", "B")]


# --- dependencies -----------------------------------------------------------------------------------


def test_depends_on_unknown_activity_is_an_error(tmp_path: Path) -> None:
    findings = lint_doc(tmp_path, pipeline(activity("A"), activity("B", depends=[("Ghost", ["Succeeded"])])))
    assert rules_of(findings) == ["ADF050"]


def test_depends_on_an_activity_of_another_container_says_so(tmp_path: Path) -> None:
    cond = activity("If", "IfCondition", expression="@true", ifTrueActivities=[activity("Inner")])
    after = activity("After", depends=[("Inner", ["Succeeded"])])
    [finding] = lint_doc(tmp_path, pipeline(cond, after))
    assert finding.rule == "ADF050" and "another container" in finding.message


def test_depends_on_cycle_is_an_error(tmp_path: Path) -> None:
    a = activity("A", depends=[("C", ["Succeeded"])])
    b = activity("B", depends=[("A", ["Succeeded"])])
    c = activity("C", depends=[("B", ["Succeeded"])])
    findings = lint_doc(tmp_path, pipeline(a, b, c, activity("Free")))
    assert rules_of(findings) == ["ADF051"] and "A -> C -> B -> A" in findings[0].message


def test_invalid_dependency_conditions_are_errors_and_a_case_slip_a_warning(tmp_path: Path) -> None:
    a = activity("A")
    b = activity("B", depends=[("A", ["Done"])])
    c = activity("C", depends=[("A", [])])
    d = activity("D", depends=[("A", ["succeeded"])])
    e = activity("E", depends=[("A", ["Succeeded", "Failed", "Skipped", "Completed"])])
    findings = lint_doc(tmp_path, pipeline(a, b, c, d, e))
    assert [(f.rule, f.severity, f.activity) for f in findings] == [
        ("ADF052", "error", "B"),
        ("ADF052", "error", "C"),
        ("ADF052", "warning", "D"),
    ]


# --- variables --------------------------------------------------------------------------------------


def test_set_variable_on_undeclared_variable_is_an_error(tmp_path: Path) -> None:
    act = activity("S", "SetVariable", variableName="ghost", value="x")
    assert rules_of(lint_doc(tmp_path, pipeline(act, variables={"v": {"type": "String"}}))) == ["ADF060"]


def test_pipeline_return_value_is_not_an_undeclared_variable(tmp_path: Path) -> None:
    act = activity(
        "Ret",
        "SetVariable",
        variableName="pipelineReturnValue",
        setSystemVariable=True,
        value=[{"key": "version", "value": {"type": "Expression", "content": "@pipeline().RunId"}}],
    )
    assert lint_doc(tmp_path, pipeline(act)) == []


def test_append_to_a_string_variable_is_an_error(tmp_path: Path) -> None:
    act = activity("Ap", "AppendVariable", variableName="v", value="x")
    assert rules_of(lint_doc(tmp_path, pipeline(act, variables={"v": {"type": "String"}}))) == ["ADF061"]


def test_set_variable_in_parallel_foreach_is_a_warning_but_not_when_sequential(tmp_path: Path) -> None:
    set_v = activity("Set", "SetVariable", variableName="v", value="@string(item())")
    append = activity("Add", "AppendVariable", variableName="a", value="@item()")
    parallel = activity("Par", "ForEach", items="@createArray(1, 2)", activities=[set_v, append])
    seq_set = activity("Set2", "SetVariable", variableName="v", value="@string(item())")
    sequential = activity("Seq", "ForEach", items="@createArray(1, 2)", isSequential=True, activities=[seq_set])
    findings = lint_doc(
        tmp_path, pipeline(parallel, sequential, variables={"v": {"type": "String"}, "a": {"type": "Array"}})
    )
    assert [(f.rule, f.severity, f.activity) for f in findings] == [("ADF062", "warning", "Set")]


# --- policies, names, ExecutePipeline -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "rules"),
    [
        ("0.12:00:00", []),
        ("7.00:00:00", []),
        ("02:00:00", []),
        ("0.0:10:00", ["ADF074"]),
        ("12 hours", ["ADF070"]),
        ("0.25:00:00", ["ADF070"]),
        ("@pipeline().parameters.t", []),
        ("[parameters('timeout')]", []),
    ],
)
def test_policy_timeout_must_be_a_timespan(tmp_path: Path, timeout: str, rules: list[str]) -> None:
    act = web()
    act["policy"] = {"timeout": timeout, "retry": 0, "retryIntervalInSeconds": 30}
    assert rules_of(lint_doc(tmp_path, pipeline(act, parameters={"t": {"type": "String"}}))) == rules


def test_until_timeout_is_checked_like_a_policy_timeout(tmp_path: Path) -> None:
    until = activity("U", "Until", expression="@true", timeout="1 day", activities=[activity("W")])
    assert rules_of(lint_doc(tmp_path, pipeline(until))) == ["ADF070"]


@pytest.mark.parametrize(("interval", "rules"), [(5, ["ADF071"]), (30, []), (86400, []), (86401, ["ADF071"])])
def test_retry_interval_outside_30_to_86400_is_a_warning(tmp_path: Path, interval: int, rules: list[str]) -> None:
    act = web()
    act["policy"] = {"retry": 1, "retryIntervalInSeconds": interval}
    assert rules_of(lint_doc(tmp_path, pipeline(act))) == rules


def test_negative_retry_is_an_error(tmp_path: Path) -> None:
    act = web()
    act["policy"] = {"retry": -1}
    assert rules_of(lint_doc(tmp_path, pipeline(act))) == ["ADF073"]


def test_duplicate_activity_names_are_errors_even_when_nested(tmp_path: Path) -> None:
    cond = activity("If", "IfCondition", expression="@true", ifTrueActivities=[activity("Same")])
    findings = lint_doc(tmp_path, pipeline(activity("Same"), cond))
    assert rules_of(findings) == ["ADF080"]
    assert findings[0].path == "$.properties.activities[1].typeProperties.ifTrueActivities[0].name"


def test_execute_pipeline_of_a_missing_pipeline_is_an_error_in_a_factory(tmp_path: Path) -> None:
    child = pipeline(activity("W"), name="child")
    ok = activity("Ok", "ExecutePipeline", pipeline={"referenceName": "child", "type": "PipelineReference"})
    bad = activity("Bad", "ExecutePipeline", pipeline={"referenceName": "ghost", "type": "PipelineReference"})
    root = make_factory(tmp_path / "adf", pipeline(ok, bad, name="parent"), child)
    assert [(f.rule, f.activity) for f in lint_paths([root]).findings] == [("ADF090", "Bad")]
    assert lint_doc(tmp_path, pipeline(bad)) == []  # a single file cannot know the factory's pipelines


# --- loader -----------------------------------------------------------------------------------------


def test_invalid_json_is_reported_as_adf000_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "name": "x",\n  "properties": {,\n}', encoding="utf-8")
    [finding] = lint_paths([path]).findings
    assert (finding.rule, finding.severity, finding.line) == ("ADF000", "error", 3)


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', '{"name": "ds", "properties": {"type": "Json"}}'])
def test_json_without_a_pipeline_is_reported_as_info(tmp_path: Path, content: str) -> None:
    path = tmp_path / "odd.json"
    path.write_text(content, encoding="utf-8")
    assert [(f.rule, f.severity) for f in lint_paths([path]).findings] == [("ADF001", "info")]


def test_file_with_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_text("\ufeff" + json.dumps(pipeline(activity("W"))), encoding="utf-8")
    loaded = load_file(path)
    assert [p.name for p in loaded.pipelines] == ["pl"] and not loaded.problems


def test_arm_template_yields_every_pipeline_with_a_readable_name_and_file_paths(tmp_path: Path) -> None:
    bad = web()
    bad["connectVia"] = {"referenceName": "IR", "type": "IntegrationRuntimeReference"}
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "variables": {"plName": "from-variable"},
        "resources": [
            {"type": "Microsoft.DataFactory/factories/datasets", "name": "[concat(parameters('f'), '/ds')]"},
            {
                "type": "Microsoft.DataFactory/factories/pipelines",
                "name": "[concat(parameters('f'), '/first')]",
                "properties": {"activities": [bad]},
            },
            {
                "type": "Microsoft.DataFactory/factories/pipelines",
                "name": "[format('{0}/{1}', parameters('f'), variables('plName'))]",
                "properties": {"activities": []},
            },
        ],
    }
    path = tmp_path / "arm.json"
    path.write_text(json.dumps(template, indent=2), encoding="utf-8")
    assert [p.name for p in load_file(path).pipelines] == ["first", "from-variable"]
    [finding] = lint_paths([path]).findings
    assert finding.path == "$.resources[1].properties.activities[0].connectVia"
    assert finding.pipeline == "first"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("[concat(parameters('factoryName'), '/PL_X')]", "PL_X"),
        ("[concat(parameters('f'), '/','GPL_', parameters('ir'))]", "GPL_{ir}"),
        ("factory/plain", "plain"),
        ("Just a name", "Just a name"),
        ("[resourceId('x')]", "{resourceId('x')}"),
    ],
)
def test_arm_resource_names_become_readable(name: str, expected: str) -> None:
    assert readable_resource_name(name, {}) == expected


def test_json_path_lines_follow_the_file_and_fall_back_to_the_nearest_ancestor() -> None:
    text = '{\n  "a": [\n    {"b": 1},\n    {\n      "odd key": 2\n    }\n  ]\n}'
    index = jsonpos.line_index(text)
    assert jsonpos.line_of(index, "$.a[0].b") == 3
    assert jsonpos.line_of(index, "$.a[1]['odd key']") == 5
    assert jsonpos.line_of(index, "$.a[1].missing") == 4
    assert jsonpos.split(jsonpos.join("$", ["a", 1, "odd key"])) == ("a", 1, "odd key")


def test_every_rule_id_in_findings_is_in_the_catalog() -> None:
    assert all(rule.id == key and rule.severity in {"error", "warning", "info"} for key, rule in RULES.items())


def _line_of(path: Path, key: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if f'"{key}"' in line)


ODD_ACTIVITIES: list[Any] = [
    1,
    "x",
    None,
    [],
    {"name": 5, "type": None, "dependsOn": "A", "policy": "p", "typeProperties": []},
    {
        "name": "A",
        "type": "WebActivity",
        "dependsOn": [None, {"activity": 3}, {"activity": "A"}],
        "typeProperties": {"authentication": "MSI", "connectVia": "IR", "url": 7, "httpRequestTimeout": 5},
    },
    {
        "name": "B",
        "type": "IfCondition",
        "typeProperties": {"ifTrueActivities": {"not": "a list"}, "cases": [None, {"activities": "x"}]},
    },
    {"name": "C", "type": "SetVariable", "typeProperties": {"variableName": ["v"], "value": {"type": "Expression"}}},
    {"name": "D", "type": "ExecutePipeline", "typeProperties": {"pipeline": "p", "parameters": [1]}},
    {
        "name": "E",
        "type": "ForEach",
        "policy": {"timeout": 5, "retry": "2", "retryIntervalInSeconds": "x"},
        "typeProperties": {"items": {"value": 1, "type": "Expression"}, "activities": [None]},
    },
]


@pytest.mark.parametrize(
    "props",
    [
        {"activities": ODD_ACTIVITIES},
        {"activities": ODD_ACTIVITIES, "parameters": [], "variables": "x"},
        {"activities": "not a list"},
        {"activities": []},
    ],
)
def test_linter_survives_odd_shapes(tmp_path: Path, props: dict[str, Any]) -> None:
    findings = lint_doc(tmp_path, {"name": "odd", "properties": props})
    assert all(f.rule in RULES for f in findings)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=12)
    | st.sampled_from(["@item()", "@activity('A').output", "@{variables('v')}", "@(", "0.00:10:00", "MSI"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "type",
                    "dependsOn",
                    "activity",
                    "dependencyConditions",
                    "typeProperties",
                    "activities",
                    "policy",
                    "timeout",
                    "connectVia",
                    "authentication",
                    "variableName",
                    "value",
                    "cases",
                    "ifTrueActivities",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(activities=st.lists(json_values, max_size=4))
def test_linter_never_crashes_on_random_activity_json(tmp_path: Path, activities: list[Any]) -> None:
    findings = lint_doc(tmp_path, {"name": "fuzz", "properties": {"activities": activities}})
    assert all(f.rule in RULES for f in findings)


# --- CLI --------------------------------------------------------------------------------------------


def test_cli_lint_exits_0_when_clean_and_1_on_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps(pipeline(activity("W"))), encoding="utf-8")
    dirty = tmp_path / "dirty.json"
    dirty.write_text(json.dumps(pipeline(activity("W", depends=[("Ghost", ["Succeeded"])]))), encoding="utf-8")
    assert cli.main(["--ci", "plain", "adf", "lint", str(clean)]) == 0
    assert cli.main(["--ci", "plain", "adf", "lint", str(dirty)]) == 1
    out = capsys.readouterr().out
    assert "ADF050" in out and "1 error(s)" in out


def test_cli_lint_fail_on_sets_the_threshold(tmp_path: Path) -> None:
    act = web()
    act["policy"] = {"retryIntervalInSeconds": 5}
    path = tmp_path / "warn.json"
    path.write_text(json.dumps(pipeline(act)), encoding="utf-8")
    assert cli.main(["--ci", "plain", "adf", "lint", str(path)]) == 0
    assert cli.main(["--ci", "plain", "adf", "lint", "--fail-on", "warning", str(path)]) == 1
    assert cli.main(["--ci", "plain", "adf", "lint", "--fail-on", "error", str(path)]) == 0


def test_cli_lint_json_output_lists_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    act = web()
    act["connectVia"] = {"referenceName": "IR", "type": "IntegrationRuntimeReference"}
    path = tmp_path / "pl.json"
    path.write_text(json.dumps(pipeline(act), indent=2), encoding="utf-8")
    for argv in (["--output", "json", "adf", "lint", str(path)], ["adf", "lint", "--format", "json", str(path)]):
        capsys.readouterr()
        assert cli.main(["--ci", "plain", *argv]) == 1
        data = json.loads(capsys.readouterr().out)
        assert data["counts"] == {"error": 1, "warning": 0, "info": 0} and data["failed"] is True
        assert data["findings"][0]["rule"] == "ADF010" and data["findings"][0]["line"] == _line_of(path, "connectVia")


def test_cli_lint_annotations_name_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    act = web()
    act["connectVia"] = {"referenceName": "IR", "type": "IntegrationRuntimeReference"}
    path = tmp_path / "pl.json"
    path.write_text(json.dumps(pipeline(act), indent=2), encoding="utf-8")
    assert cli.main(["--ci", "github", "adf", "lint", "--format", "annotations", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"::error file={path},line={_line_of(path, 'connectVia')},title=ADF010 pl::" in err


def test_cli_lint_missing_path_is_a_usage_error_not_a_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--ci", "plain", "adf", "lint", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "Fix the JSON syntax" not in err


# --- ForEach batchCount and and/or arity (issue 22) --------------------------------------------------------


@pytest.mark.parametrize("batch", [60, 0, "20"])
def test_foreach_batch_count_adf_refuses_is_an_error(tmp_path: Path, batch: Any) -> None:
    # Docs: batchCount "Integer (maximum 50)"; "must be between 1 and 50" (MicrosoftDocs/azure-docs#58758).
    loop = activity("Loop", "ForEach", items="@createArray(1)", batchCount=batch, activities=[activity("W")])
    [finding] = lint_doc(tmp_path, pipeline(loop))
    assert finding.rule == "ADF075" and finding.severity == "error"
    assert finding.path == "$.properties.activities[0].typeProperties.batchCount"


@pytest.mark.parametrize("batch", [1, 50])
def test_foreach_batch_count_within_limits_is_clean(tmp_path: Path, batch: int) -> None:
    loop = activity("Loop", "ForEach", items="@createArray(1)", batchCount=batch, activities=[activity("W")])
    assert lint_doc(tmp_path, pipeline(loop)) == []


@pytest.mark.parametrize("value", ["@and(true, true, true)", "@or(false)", "@string(or(true, false, true))"])
def test_and_or_with_other_than_two_arguments_is_an_error(tmp_path: Path, value: str) -> None:
    # ADF: "function 'and' does not accept 3 argument(s)" (MicrosoftDocs/azure-docs#54944, #55549).
    act = activity("S", "SetVariable", variableName="v", value=value)
    [finding] = lint_doc(tmp_path, pipeline(act, variables={"v": {"type": "String"}}))
    assert finding.rule == "ADF030" and "takes 2 arguments" in finding.message
