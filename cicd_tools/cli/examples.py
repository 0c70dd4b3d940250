"""Examples for each command's `--help` epilog, generated from docs/commands/*.md by
scripts/help_examples.py (a test fails when this file is stale). Do not edit by hand."""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    'adf deploy': (
        'cicd-tools adf deploy adf/ --dry-run',
        'cicd-tools adf deploy adf/ --global storageBlobEndpoint=https://mystore.blob.core.windows.net',
    ),
    'adf diff': (
        'cicd-tools adf diff adf/',
    ),
    'adf eval': (
        'cicd-tools adf eval "@concat(\'run-\', pipeline().RunId, \'-\', formatDateTime(utcNow(), \'yyyyMMdd\'))" --run-id 1234 --now 2024-05-01T06:00:00Z',
        'cicd-tools --output json adf eval "@activity(\'Lookup\').output.firstRow" --activity-output \'Lookup={"firstRow": {"id": 7}}\'',
        'cicd-tools adf eval "Files for @{pipeline().parameters.env}: @{join(variables(\'files\'), \',\')}" --param env=dev --variable \'files=["a.csv","b.csv"]\'',
    ),
    'adf lint': (
        'cicd-tools adf lint adf/',
        'cicd-tools adf lint pipeline.json --fail-on warning',
        'cicd-tools --ci github adf lint adf/ --format annotations',
    ),
    'adf run': (
        'cicd-tools adf run --pipeline pl_read_pointer --wait --timeout 30m',
        'cicd-tools --output json adf run --pipeline pl_train_and_validate --param runTag=nightly --wait',
    ),
    'adf run-local': (
        'cicd-tools adf run-local adf/pipeline/pl_train_and_validate.json --factory adf --param runTag=nightly',
        'cicd-tools --output json adf run-local pipeline.json --param retries=3',
        'cicd-tools adf run-local adf/pipeline/pl_read_pointer.json --factory adf --global pointerContainer=ml-globals-staging',
    ),
    'aml lint-job': (
        'cicd-tools aml lint-job aml/jobs/train.yml aml/jobs/validate.yml adf/pipeline/pl_run_aml_job.json',
        'cicd-tools --output json aml lint-job aml/jobs/train.yml --fail-on error',
    ),
    'aml verify': (
        'cicd-tools aml verify --job train-nightly-1 --pointer training-code',
        'cicd-tools aml verify --adf-run-id 6f1c0f0e-8a52-4f7e-b0a7-0d6c1f5e9b11 --pointer training-code validation-code --factory adf-sandbox',
        'cicd-tools --output json aml verify --adf-run-id 6f1c0f0e-8a52-4f7e-b0a7-0d6c1f5e9b11 --pointer training-code --factory adf-sandbox',
    ),
    'ci lint': (
        'cicd-tools ci lint azure-pipelines.yml templates/*.yml',
        'cicd-tools --ci github ci lint .github/workflows/*.yml .github/actions/*/action.yml',
        'cicd-tools --output json ci lint azure-pipelines.yml --fail-on warning',
    ),
    'code hash': (
        'cicd-tools code hash src/train',
        'cicd-tools --output json code hash src/train --list-files',
        'cicd-tools code hash src/train --repo-root .',
    ),
    'code plan': (
        'cicd-tools code plan --name training-code --path src/train --version 42',
    ),
    'code register': (
        'cicd-tools code register --name training-code --path src/train --pointer --result-file out/code.json',
        'cicd-tools code register --name training-code --path src/train --unique',
        'cicd-tools --output json code register --pointer --asset training-code=src/train --asset validation-code=src/validate',
    ),
    'completion': (
        'cicd-tools completion bash',
        'cicd-tools completion zsh',
    ),
    'doctor': (
        'cicd-tools doctor',
        'cicd-tools --output json doctor --constraints constraints.txt',
        'cicd-tools doctor --online',
    ),
    'firewall close': (
        'cicd-tools firewall close',
        'cicd-tools firewall close --lease-id ado-4711-job1 --account mlopsdata --grace 20s',
    ),
    'firewall open': (
        'cicd-tools firewall open --subscription-id $SUB --resource-group rg-mlops --account mlopsdata --ttl 2h',
    ),
    'firewall sweep': (
        'cicd-tools firewall sweep --subscription-id $SUB --resource-group rg-mlops --account mlopsdata',
    ),
    'flow': (
        'cicd-tools flow',
        'cicd-tools flow --report out/evidence.json --code-version 42',
        'cicd-tools flow --skip adf-run --skip aml-verify',
    ),
    'model mirror': (
        'cicd-tools model mirror --job train-nightly-1 --name linear-model',
        'cicd-tools model mirror --adf-run-id 6f1c0f0e-8a52-4f7e-b0a7-0d6c1f5e9b11 --name linear-model --factory adf-sandbox',
        'cicd-tools --output json model mirror --from-path /mnt/runs/osmo-42 --run-id osmo-42 --name linear-model --best-effort',
    ),
    'pointer history': (
        'cicd-tools pointer history --asset training-code --query "[0].version" -o tsv',
        'cicd-tools pointer history --asset training-code',
    ),
    'pointer read': (
        'cicd-tools pointer read --asset training-code',
        'cicd-tools pointer read --asset training-code --subscription-id 00000000-0000-0000-0000-000000000000 --resource-group rg-mlops-sandbox --workspace mlw-sandbox',
        'cicd-tools --output json pointer read --asset training-code --field assetId',
    ),
    'pointer rollback': (
        'cicd-tools pointer rollback --asset training-code --to 6',
    ),
    'pointer schema': (
        'cicd-tools pointer schema --write adf/contracts/code-asset-pointer.schema.json',
    ),
    'pointer write': (
        'cicd-tools pointer write --asset training-code --version 7 --requested-version 42',
        'cicd-tools pointer write --asset training-code --version 7 --force-replace',
    ),
    'preflight': (
        'cicd-tools preflight',
        'cicd-tools preflight --adf-dir adf --no-firewall --skip factory',
        'cicd-tools --output json preflight --fresh-minutes 15',
    ),
    'report schema': (
        'cicd-tools report schema --write cicd_tools/schemas/evidence-report.schema.json',
    ),
    'report show': (
        'cicd-tools report show out/evidence.json',
        'cicd-tools --output json report show out/evidence.json',
    ),
    'sandbox down': (
        'cicd-tools sandbox down',
    ),
    'sandbox env': (
        'cicd-tools sandbox env',
        'cicd-tools sandbox env --credential azure-cli',
    ),
    'sandbox status': (
        'cicd-tools --output json sandbox status',
    ),
    'sandbox up': (
        'cicd-tools sandbox up',
        'cicd-tools sandbox up --scenario key-datastores',
    ),
    'storage diagnose': (
        'cicd-tools --output json storage diagnose --subscription-id $SUB --resource-group rg-mlops --account mlopsdata',
    ),
    'storage smoke': (
        'cicd-tools --debug storage smoke',
        'cicd-tools storage smoke --account mlopsdata --container ml-globals',
    ),
}
