#!/bin/sh
# Post-deploy smoke test of the API's sign-in (azure.yaml postdeploy). Fails the deploy if the
# audit API answers 200 to a caller without credentials, or to one that forges the identity
# header App Service Authentication sets (X-MS-CLIENT-PRINCIPAL, claiming the reader role):
# either would mean anyone on the internet can read user names, client IPs and targets.
# 401/403/302 are the expected answers; anything else (a cold start's 5xx) is only reported.
set -eu

base="${SERVICE_BASTION_AUDIT_BASE_URL:?SERVICE_BASTION_AUDIT_BASE_URL is not set}"
role="${API_READER_ROLE:-BastionAudit.Read}"
claims="$(printf '{"auth_typ":"aad","name_typ":"name","role_typ":"roles","claims":[{"typ":"roles","val":"%s"},{"typ":"name","val":"forged"}]}' "$role")"
forged="$(printf '%s' "$claims" | base64 | tr -d '\n')"

status() { # URL [HEADER...]
  url="$1"
  shift
  code=000
  for _ in 1 2 3 4 5 6; do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -H 'Accept: application/json' "$@" "$url" || true)"
    case "$code" in
      000 | 5??) sleep 10 ;;
      *) break ;;
    esac
  done
  echo "$code"
}

failed=0
for route in activity alerts report; do
  for mode in anonymous forged; do
    if [ "$mode" = forged ]; then
      code="$(status "$base/api/$route" -H "X-MS-CLIENT-PRINCIPAL: $forged" -H "X-MS-CLIENT-PRINCIPAL-IDP: aad" -H "X-MS-CLIENT-PRINCIPAL-NAME: forged")"
    else
      code="$(status "$base/api/$route")"
    fi
    case "$code" in
      401 | 403 | 302) echo "check-auth: /api/$route ($mode): $code, as expected" ;;
      2??)
        echo "check-auth: /api/$route ($mode) answered $code: the audit data is open" >&2
        failed=1
        ;;
      *) echo "check-auth: /api/$route ($mode) answered $code; could not verify sign-in" >&2 ;;
    esac
  done
done
exit "$failed"
