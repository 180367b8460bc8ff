# The Microsoft Entra ID app registration that App Service Authentication signs people and
# machine clients in with (Bicep alone cannot create one). Windows twin of entra-app.sh; run by
# azd (azure.yaml):
#
#   entra-app.ps1 preprovision   API_CLIENT_ID unset: create the registration (single tenant,
#                                app role API_READER_ROLE for users and applications, v2 access
#                                tokens, App ID URI api://<client id>, ID tokens for browser
#                                sign-in), its service principal with "assignment required", and
#                                store API_CLIENT_ID in the azd environment.
#                                API_CLIENT_ID set (bring your own): check it; change nothing.
#   entra-app.ps1 postprovision  add https://<app>/.auth/login/aad/callback as a redirect URI and,
#                                when API_READER_GROUP_ID is set, assign that group the role.
param([Parameter(Mandatory = $true)][ValidateSet('preprovision', 'postprovision')][string]$Stage)

$ErrorActionPreference = 'Stop'
$Role = if ($env:API_READER_ROLE) { $env:API_READER_ROLE } else { 'BastionAudit.Read' }
# Fixed ID of the app role in registrations this hook creates (unique within the application).
$RoleId = '5acae7c3-e9f3-404d-b7a0-1b8e6c966e08'
$Graph = (az cloud show --query endpoints.microsoftGraphResourceId -o tsv).TrimEnd('/')

function Invoke-Az {
    $output = & az @args
    if ($LASTEXITCODE -ne 0) { throw "az $($args -join ' ') failed" }
    return $output
}

function Set-Graph([string]$Url, [hashtable]$Body) {
    $file = New-TemporaryFile
    $Body | ConvertTo-Json -Depth 10 | Set-Content -Path $file -Encoding utf8
    Invoke-Az rest --method PATCH --url $Url --headers 'Content-Type=application/json' --body "@$file" | Out-Null
    Remove-Item $file
}

function Get-RoleId([string]$AppId) {
    return az ad app show --id $AppId --query "appRoles[?value=='$Role' && isEnabled].id | [0]" -o tsv
}

if ($Stage -eq 'preprovision') {
    if ($env:API_CLIENT_ID) {
        az ad app show --id $env:API_CLIENT_ID --query appId -o tsv | Out-Null
        if ($LASTEXITCODE -ne 0) { throw "API_CLIENT_ID=$($env:API_CLIENT_ID) is not an app registration in this tenant" }
        if (-not (Get-RoleId $env:API_CLIENT_ID)) {
            throw "app registration $($env:API_CLIENT_ID) has no enabled app role '$Role' (see docs/deploy.md, 'Bring your own')"
        }
        Write-Host "entra-app: using app registration $($env:API_CLIENT_ID) (app role $Role)"
        exit 0
    }
    if (-not $env:AZURE_ENV_NAME) { throw 'AZURE_ENV_NAME is not set' }
    $name = "bastion-audit-$($env:AZURE_ENV_NAME)"
    $appId = az ad app list --display-name $name --query '[0].appId' -o tsv
    if (-not $appId) {
        Write-Host "entra-app: creating app registration $name"
        $appId = az ad app create --display-name $name --sign-in-audience AzureADMyOrg --query appId -o tsv
        if ($LASTEXITCODE -ne 0 -or -not $appId) { throw "could not create the app registration $name" }
    }
    else {
        Write-Host "entra-app: reusing app registration $name ($appId)"
    }

    Set-Graph "$Graph/v1.0/applications(appId='$appId')" @{
        identifierUris = @("api://$appId")
        api            = @{ requestedAccessTokenVersion = 2 }
        web            = @{ implicitGrantSettings = @{ enableIdTokenIssuance = $true } }
        appRoles       = @(@{
                id                 = $RoleId
                value              = $Role
                displayName        = 'Bastion audit reader'
                description        = 'Read the Bastion audit activity, alerts and report.'
                allowedMemberTypes = @('User', 'Application')
                isEnabled          = $true
            })
    }

    az ad sp show --id $appId --query id -o tsv 2>$null | Out-Null
    if ($LASTEXITCODE -ne 0) { Invoke-Az ad sp create --id $appId --query id -o tsv | Out-Null }
    # Entra ID issues tokens for this API only to users, groups and applications assigned a role.
    Set-Graph "$Graph/v1.0/servicePrincipals(appId='$appId')" @{ appRoleAssignmentRequired = $true }

    azd env set API_CLIENT_ID $appId
    azd env set API_APP_CREATED_BY_HOOK true
    Write-Host "entra-app: API_CLIENT_ID=$appId"
    exit 0
}

# postprovision
$appId = $env:API_CLIENT_ID
if (-not $appId) { throw 'API_CLIENT_ID is not set' }
if (-not $env:SERVICE_BASTION_AUDIT_BASE_URL) { throw 'SERVICE_BASTION_AUDIT_BASE_URL is not set (run azd provision)' }
$redirect = "$($env:SERVICE_BASTION_AUDIT_BASE_URL)/.auth/login/aad/callback"
$uris = @(az ad app show --id $appId --query 'web.redirectUris' -o tsv | Where-Object { $_ })
if ($uris -notcontains $redirect) {
    if ($env:API_APP_CREATED_BY_HOOK -eq 'true') {
        Invoke-Az ad app update --id $appId --web-redirect-uris @($uris + $redirect) | Out-Null
        Write-Host "entra-app: added redirect URI $redirect"
    }
    else {
        Write-Warning "entra-app: add the web redirect URI $redirect to app registration $appId for browser sign-in"
    }
}

if ($env:API_READER_GROUP_ID) {
    $roleId = Get-RoleId $appId
    $spId = Invoke-Az ad sp show --id $appId --query id -o tsv
    $assigned = Invoke-Az rest --method GET --url "$Graph/v1.0/servicePrincipals/$spId/appRoleAssignedTo" `
        --query "value[?principalId=='$($env:API_READER_GROUP_ID)' && appRoleId=='$roleId'] | length(@)" -o tsv
    if ($assigned -eq '0') {
        $file = New-TemporaryFile
        @{ principalId = $env:API_READER_GROUP_ID; resourceId = $spId; appRoleId = $roleId } |
            ConvertTo-Json | Set-Content -Path $file -Encoding utf8
        Invoke-Az rest --method POST --url "$Graph/v1.0/servicePrincipals/$spId/appRoleAssignedTo" `
            --headers 'Content-Type=application/json' --body "@$file" | Out-Null
        Remove-Item $file
        Write-Host "entra-app: group $($env:API_READER_GROUP_ID) now has app role $Role"
    }
}
