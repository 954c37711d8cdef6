#!/usr/bin/env bash
# `make fuzz` (optional, not part of `make test`): schemathesis generates requests for every operation of the OpenAPI
# schema the server publishes and reports server errors, undocumented status codes or content types, and answers the
# schema does not allow. It creates, changes and deletes objects: run it against a throwaway database (`make demo`),
# never production.
#
#   CDP_URL=http://127.0.0.1:8000 CDP_TOKEN=<an API token> make fuzz [FUZZ_ARGS="--seed 1 --include-path-regex segments"]
#
# A superuser's token reaches every operation; a narrow role's checks the 403s. Logout and deleting users or tokens
# are left out (they would revoke the token mid-run). The public /v1/* endpoints need a source's write key instead:
# CDP_WRITE_KEY=<key> (basic auth) with FUZZ_ARGS="--include-path-regex ^/v1".
set -euo pipefail

url=${CDP_URL:-http://127.0.0.1:8000}
auth=()
if [[ -n ${CDP_WRITE_KEY:-} ]]; then
    auth=(--auth "$CDP_WRITE_KEY:")
elif [[ -n ${CDP_TOKEN:-} ]]; then
    auth=(--header "Authorization: Token $CDP_TOKEN")
else
    echo "error: set CDP_TOKEN (an API token) or CDP_WRITE_KEY (a source's write key, for /v1/*)" >&2
    exit 2
fi

# shellcheck disable=SC2086  # FUZZ_ARGS is a list of options
exec .venv-fuzz/bin/schemathesis run "$url/api/schema/?format=json" --url "$url" "${auth[@]}" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing --max-examples "${FUZZ_MAX_EXAMPLES:-5}" --workers 1 --request-timeout 30 \
    --exclude-path-regex logout \
    --exclude-by 'method == "DELETE" and (path starts_with "/api/users" or path starts_with "/api/tokens")' \
    --generation-database .data/fuzz/examples --report junit --report-dir .data/fuzz ${FUZZ_ARGS:-}
