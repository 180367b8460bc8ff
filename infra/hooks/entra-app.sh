#!/bin/sh
# The Microsoft Entra ID app registration that App Service Authentication signs people and
# machine clients in with (Bicep alone cannot create one). Run by azd (azure.yaml):
#
#   entra-app.sh preprovision   API_CLIENT_ID unset: create the registration (single tenant,
#                               app role API_READER_ROLE for users and applications, v2 access
#                               tokens, App ID URI api://<client id>, ID tokens for browser
#                               sign-in), its service principal with "assignment required", and
#                               store API_CLIENT_ID in the azd environment.
#                               API_CLIENT_ID set (bring your own): check that it exists and
#                               defines the app role; change nothing.
#   entra-app.sh postprovision  add https://<app>/.auth/login/aad/callback as a redirect URI (to a
#                               registration this hook created; for your own, print what to add)
#                               and, when API_READER_GROUP_ID is set, assign that group the role.
#
# Needs the Azure CLI signed in (`az login`) as someone allowed to register applications
# (Entra role Application Developer, or the default user setting). See docs/deploy.md.
set -eu

ROLE="${API_READER_ROLE:-BastionAudit.Read}"
# Fixed ID of the app role in registrations this hook creates (unique within the application).
ROLE_ID="5acae7c3-e9f3-404d-b7a0-1b8e6c966e08"
GRAPH="$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv | sed 's:/*$::')"

fail() {
  echo "entra-app: $*" >&2
  exit 1
}

graph_patch() { # URL JSON
  body="$(mktemp)"
  printf '%s' "$2" >"$body"
  az rest --method PATCH --url "$1" --headers "Content-Type=application/json" --body "@$body" >/dev/null
  rm -f "$body"
}

role_id_of() { # APP_ID -> id of the enabled app role $ROLE, or nothing
  az ad app show --id "$1" --query "appRoles[?value=='$ROLE' && isEnabled].id | [0]" -o tsv
}

preprovision() {
  if [ -n "${API_CLIENT_ID:-}" ]; then
    az ad app show --id "$API_CLIENT_ID" --query appId -o tsv >/dev/null 2>&1 ||
      fail "API_CLIENT_ID=$API_CLIENT_ID is not an app registration in this tenant"
    [ -n "$(role_id_of "$API_CLIENT_ID")" ] ||
      fail "app registration $API_CLIENT_ID has no enabled app role '$ROLE' (see docs/deploy.md, 'Bring your own')"
    echo "entra-app: using app registration $API_CLIENT_ID (app role $ROLE)"
    return
  fi

  name="bastion-audit-${AZURE_ENV_NAME:?AZURE_ENV_NAME is not set}"
  app_id="$(az ad app list --display-name "$name" --query "[0].appId" -o tsv)"
  if [ -z "$app_id" ]; then
    echo "entra-app: creating app registration $name"
    app_id="$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg --query appId -o tsv)"
  else
    echo "entra-app: reusing app registration $name ($app_id)"
  fi
  [ -n "$app_id" ] || fail "could not create the app registration $name"

  # App role for people (User, groups) and machine clients (Application); v2 access tokens;
  # App ID URI for client-credentials tokens (api://<client id>/.default); ID tokens so that
  # App Service Authentication can sign browsers in without a client secret.
  graph_patch "$GRAPH/v1.0/applications(appId='$app_id')" "$(printf '{
  "identifierUris": ["api://%s"],
  "api": {"requestedAccessTokenVersion": 2},
  "web": {"implicitGrantSettings": {"enableIdTokenIssuance": true}},
  "appRoles": [{
    "id": "%s",
    "value": "%s",
    "displayName": "Bastion audit reader",
    "description": "Read the Bastion audit activity, alerts and report.",
    "allowedMemberTypes": ["User", "Application"],
    "isEnabled": true
  }]
}' "$app_id" "$ROLE_ID" "$ROLE")"

  az ad sp show --id "$app_id" --query id -o tsv >/dev/null 2>&1 ||
    az ad sp create --id "$app_id" --query id -o tsv >/dev/null
  # Entra ID issues tokens for this API only to users, groups and applications assigned a role.
  graph_patch "$GRAPH/v1.0/servicePrincipals(appId='$app_id')" '{"appRoleAssignmentRequired": true}'

  azd env set API_CLIENT_ID "$app_id"
  azd env set API_APP_CREATED_BY_HOOK true
  echo "entra-app: API_CLIENT_ID=$app_id"
}

postprovision() {
  app_id="${API_CLIENT_ID:?API_CLIENT_ID is not set}"
  base="${SERVICE_BASTION_AUDIT_BASE_URL:?SERVICE_BASTION_AUDIT_BASE_URL is not set (run azd provision)}"
  redirect="$base/.auth/login/aad/callback"
  uris="$(az ad app show --id "$app_id" --query "web.redirectUris" -o tsv | tr '\t' '\n')"
  if printf '%s\n' "$uris" | grep -qxF "$redirect"; then
    :
  elif [ "${API_APP_CREATED_BY_HOOK:-false}" = "true" ]; then
    # shellcheck disable=SC2086 # one argument per existing URI
    az ad app update --id "$app_id" --web-redirect-uris $uris "$redirect"
    echo "entra-app: added redirect URI $redirect"
  else
    echo "entra-app: add the web redirect URI $redirect to app registration $app_id for browser sign-in" >&2
  fi

  if [ -n "${API_READER_GROUP_ID:-}" ]; then
    role_id="$(role_id_of "$app_id")"
    sp_id="$(az ad sp show --id "$app_id" --query id -o tsv)"
    assigned="$(az rest --method GET --url "$GRAPH/v1.0/servicePrincipals/$sp_id/appRoleAssignedTo" \
      --query "value[?principalId=='$API_READER_GROUP_ID' && appRoleId=='$role_id'] | length(@)" -o tsv)"
    if [ "$assigned" = "0" ]; then
      body="$(printf '{"principalId": "%s", "resourceId": "%s", "appRoleId": "%s"}' \
        "$API_READER_GROUP_ID" "$sp_id" "$role_id")"
      az rest --method POST --url "$GRAPH/v1.0/servicePrincipals/$sp_id/appRoleAssignedTo" \
        --headers "Content-Type=application/json" --body "$body" >/dev/null
      echo "entra-app: group $API_READER_GROUP_ID now has app role $ROLE"
    fi
  fi
}

case "${1:-}" in
  preprovision) preprovision ;;
  postprovision) postprovision ;;
  *) fail "usage: $0 preprovision|postprovision" ;;
esac
